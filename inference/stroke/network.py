"""The ``network`` method: a segmentation network on normalised DWI + ADC.

Input channels (see :class:`NetworkParams`): DWI / local DWI of normal-ADC tissue, and ADC x
``adc_scale``, both clipped and zero outside the brain. 2-D networks run slice by slice after
in-plane resampling to ``pixel_mm`` (so models trained at one resolution see the same scale on
any scanner); 3-D networks run by MONAI sliding-window inference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..device import inference_mode
from ..errors import InputError, TransientInferenceError
from .channels import StrokeChannels, tissue_reference
from .params import NetworkParams

_MULTIPLE = 16


def network_input(ch: StrokeChannels, p: NetworkParams) -> np.ndarray:
    """(2, z, y, x) float32: normalised DWI and scaled ADC, zero outside the brain."""
    ref = tissue_reference(ch, p.adc_floor, p.csf_adc, p.adc_normal, p.reference_sigma_mm)
    dwi = np.clip(ch.dwi / ref, 0.0, p.dwi_clip)
    adc = np.clip(ch.adc * p.adc_scale, 0.0, p.adc_clip)
    out = np.stack([dwi, adc]).astype(np.float32)
    out *= ch.brain[None]
    return out


def inplane_size(shape_yx: tuple[int, int], spacing_yx: tuple[float, float],
                 pixel_mm: float | None) -> tuple[int, int]:
    """The (y, x) matrix of a slice resampled to ``pixel_mm`` (native when None)."""
    if pixel_mm is None:
        return shape_yx
    return (max(1, round(shape_yx[0] * spacing_yx[0] / pixel_mm)),
            max(1, round(shape_yx[1] * spacing_yx[1] / pixel_mm)))


def pad_to_multiple(x: torch.Tensor, multiple: int = _MULTIPLE) -> tuple[torch.Tensor, int, int]:
    """Zero-pad the last two axes up to a multiple (UNet strides need it); returns the sizes."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)), h, w


def _lesion_prob(logits: torch.Tensor, p: NetworkParams) -> torch.Tensor:
    if p.output == "softmax":
        if logits.shape[1] < 2:
            raise InputError("softmax output needs at least 2 channels")
        return torch.softmax(logits.float(), dim=1)[:, 1]
    return torch.sigmoid(logits.float()[:, 0])


class NetworkSegmenter:
    """Runs a loaded network (state_dict, TorchScript or MONAI bundle) on stroke channels."""

    def __init__(self, network: torch.nn.Module, params: NetworkParams,
                 device: torch.device) -> None:
        self.network, self.params, self.device = network, params, device

    def probability(self, ch: StrokeChannels) -> np.ndarray:
        """Lesion probability (z, y, x) float32 on the input grid.

        Raises:
            TransientInferenceError: the device ran out of memory.
        """
        x = torch.from_numpy(network_input(ch, self.params))
        try:
            if self.params.spatial_dims == 2:
                prob = self._slices(x, ch.grid.spacing)
            else:
                prob = self._volume(x)
        except torch.OutOfMemoryError as exc:
            raise TransientInferenceError("device out of memory during stroke inference") from exc
        return prob.numpy().astype(np.float32)

    def _slices(self, x: torch.Tensor, spacing: tuple[float, float, float]) -> torch.Tensor:
        p = self.params
        nz, ny, nx = x.shape[1:]
        size = inplane_size((ny, nx), (spacing[1], spacing[2]), p.pixel_mm)
        slabs = x.permute(1, 0, 2, 3)  # (z, 2, y, x): slices as a batch
        if size != (ny, nx):
            slabs = F.interpolate(slabs, size=size, mode="bilinear", align_corners=False)
        padded, h, w = pad_to_multiple(slabs)
        outs = []
        with inference_mode(self.device):
            for i in range(0, nz, p.batch_slices):
                logits = self.network(padded[i:i + p.batch_slices].to(self.device))
                logits = logits[0] if isinstance(logits, tuple | list) else logits
                outs.append(_lesion_prob(logits, p)[:, :h, :w].float().cpu())
        prob = torch.cat(outs)[:, None]
        if size != (ny, nx):
            prob = F.interpolate(prob, size=(ny, nx), mode="bilinear", align_corners=False)
        return prob[:, 0]

    def _volume(self, x: torch.Tensor) -> torch.Tensor:
        from monai.inferers import sliding_window_inference

        p = self.params
        with inference_mode(self.device):
            logits = sliding_window_inference(
                x[None].to(self.device), roi_size=p.roi_size, sw_batch_size=1,
                predictor=self.network, overlap=0.25, mode="gaussian")
        assert isinstance(logits, torch.Tensor)
        return _lesion_prob(logits, p)[0].float().cpu()

    def warmup(self) -> None:
        """One small forward pass so the first study does not pay for lazy initialisation."""
        p = self.params
        shape = (1, 2, 32, 32) if p.spatial_dims == 2 else (1, 2, *p.roi_size)
        with inference_mode(self.device):
            self.network(torch.zeros(shape, device=self.device))
