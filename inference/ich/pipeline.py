"""The ICH pipeline: per-slice and per-study probabilities, key slices, Grad-CAM, and masks.

Study probability of a class = its maximum over slabs (a study is positive when any slice is),
compared with the card's threshold for that class; a subtype is called positive only when the
study is positive for ``any`` as well (RSNA label hierarchy: ``any`` is the union of the
subtypes), so a negative study never reports a subtype. The key slice of a class is the centre slice
of its most probable slab. Grad-CAM maps are computed for each positive class on its key slice.

A network that also segments (one with ``forward_all``, e.g. :class:`~.network.IchSegNet`)
gives one mask per haemorrhage subtype that is called positive: its segmentation logits are
mapped back onto the input plane (bilinear), thresholded at probability 0.5, and every input
slice takes the mask of its slab. A negative study has no mask; a positive subtype whose map has
no voxel above 0.5 has none either (an empty segment is not a finding).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch

from ..errors import InputError, TransientInferenceError
from ..explain.gradcam import find_layer, grad_cam
from ..explain.png import overlay_png
from ..loaders import LoadedModel
from ..types import (
    ClassResult,
    KeySlice,
    ModelInfo,
    Prediction,
    SaliencyMap,
    SegmentMask,
    StudyInput,
    Timings,
    Volume,
)
from .labels import ICH_SUBTYPES
from .preprocess import Prepared, prepare, to_input_plane

log = logging.getLogger(__name__)

MASK_PROBABILITY = 0.5
_MASK_LOGIT = math.log(MASK_PROBABILITY / (1 - MASK_PROBABILITY))


class IchPipeline:
    """Runs an ICH classification model described by its card; one instance per process."""

    pipeline = "ich"

    def __init__(self, loaded: LoadedModel, batch_size: int = 32, amp: bool = True) -> None:
        self.loaded = loaded
        self.card = loaded.card
        self.batch_size = batch_size
        self.amp = amp
        self._cam_layer: torch.nn.Module | None = None
        if self.card.explain is not None and not isinstance(loaded.network, torch.jit.ScriptModule):
            self._cam_layer = find_layer(loaded.network, self.card.explain.target_layer)

    def set_explain_layer(self, name: str) -> None:
        """Compute Grad-CAM on layer ``name`` (a dotted module path) from now on."""
        self._cam_layer = find_layer(self.loaded.network, name)

    @property
    def info(self) -> ModelInfo:
        return self.card.info

    @property
    def segments(self) -> bool:
        """Whether the network has a segmentation head."""
        return hasattr(self.loaded.network, "forward_all")

    def _run(self, x: torch.Tensor, with_masks: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        dev = self.loaded.device
        net = self.loaded.network
        outs, segs = [], []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                batch = x[i : i + self.batch_size].to(dev, non_blocking=True)
                with torch.autocast(device_type="cuda", dtype=torch.float16,
                                    enabled=dev.type == "cuda" and self.amp):
                    if with_masks:
                        logits, seg = net.forward_all(batch)  # type: ignore[operator]
                        segs.append(seg.float().cpu())
                    else:
                        logits = net(batch)
                outs.append(logits.float().cpu())
        return torch.cat(outs), (torch.cat(segs) if segs else None)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def warmup(self) -> None:
        """One small forward pass so the first study does not pay for lazy initialisation."""
        spec = self.card.input
        c = len(spec.windows) * (2 * spec.context_slices + 1)
        self._logits(torch.zeros((2, c, *spec.matrix)))

    def slab_probabilities(self, prep: Prepared) -> np.ndarray:
        """Sigmoid probabilities (m, n_classes) for every slab of ``prep``."""
        return self._slab_outputs(prep, with_masks=False)[0]

    def _slab_outputs(self, prep: Prepared, with_masks: bool
                      ) -> tuple[np.ndarray, torch.Tensor | None]:
        try:
            logits, seg = self._run(prep.inputs, with_masks=with_masks and self.segments)
        except torch.OutOfMemoryError as exc:
            raise TransientInferenceError("device out of memory during ICH inference") from exc
        if logits.shape[1] != len(self.card.labels):
            raise InputError(f"model gives {logits.shape[1]} outputs, card has "
                             f"{len(self.card.labels)} labels")
        return torch.sigmoid(logits).numpy(), seg

    def predict(self, volume: Volume, explain: bool = True) -> Prediction:
        """Classify one head CT volume.

        Raises:
            InputError: the volume cannot be processed.
            TransientInferenceError: the device ran out of memory.
        """
        t0 = time.perf_counter()
        prep = prepare(volume.array, volume.spacing, self.card.input)
        t1 = time.perf_counter()
        slab_p, seg = self._slab_outputs(prep, with_masks=True)
        t2 = time.perf_counter()
        results = []
        any_j = next((j for j, lab in enumerate(self.card.labels) if lab.key == "any"), None)
        any_pos = any_j is None or float(slab_p[:, any_j].max()) >= self.card.labels[
            any_j].threshold
        for j, lab in enumerate(self.card.labels):
            best = int(np.argmax(slab_p[:, j]))
            prob = float(slab_p[best, j])
            center = int(prep.slab_center[best])
            key = KeySlice(index=center, slice_id=volume.slice_id(center), probability=prob)
            results.append(ClassResult(key=lab.key, name=lab.name, code=lab.code.to_code(),
                                       probability=prob, threshold=lab.threshold,
                                       positive=prob >= lab.threshold and any_pos,
                                       key_slice=key))
        masks = self._masks(volume, prep, seg, results) if seg is not None else ()
        saliency = self._explain(volume, prep, slab_p, results) if explain else ()
        t3 = time.perf_counter()
        return Prediction(
            pipeline=self.pipeline, model=self.info, classes=tuple(results), masks=masks,
            slice_probabilities=slab_p[prep.slab_of_slice].astype(np.float32),
            slice_ids=tuple(volume.slice_id(i) for i in range(volume.array.shape[0])),
            saliency=saliency,
            timings=Timings(preprocess_s=t1 - t0, inference_s=t2 - t1, explain_s=t3 - t2,
                            total_s=t3 - t0, device=str(self.loaded.device)),
        )

    def predict_input(self, inp: StudyInput, explain: bool = True, **options: Any
                      ) -> Prediction:
        """:meth:`predict` on the input's ``ct`` channel (HU); InputError when it has none."""
        if "ct" not in inp.volumes:
            raise InputError("the ICH pipeline needs a 'ct' channel")
        return self.predict(inp.volumes["ct"], explain=explain)

    def _masks(self, volume: Volume, prep: Prepared, seg: torch.Tensor,
               results: list[ClassResult]) -> tuple[SegmentMask, ...]:
        """One mask per positive subtype, on the input grid (segmentation channel i is subtype
        ``ICH_SUBTYPES[i]``)."""
        out = []
        for res in results:
            if not res.positive or res.key not in ICH_SUBTYPES:
                continue
            channel = ICH_SUBTYPES.index(res.key)
            if channel >= seg.shape[1]:
                continue
            slab_masks = np.stack([to_input_plane(seg[k, channel], prep) > _MASK_LOGIT
                                   for k in range(seg.shape[0])])
            mask = slab_masks[prep.slab_of_slice].astype(np.uint8)
            count = int(mask.sum())
            if count == 0:
                log.info("ICH subtype %s called positive without segmented voxels", res.key)
                continue
            out.append(SegmentMask(key=res.key, name=res.name, code=res.code, mask=mask,
                                   volume_ml=count * volume.voxel_volume_ml,
                                   voxel_count=count))
        return tuple(out)

    def _explain(self, volume: Volume, prep: Prepared, slab_p: np.ndarray,
                 results: list[ClassResult]) -> tuple[SaliencyMap, ...]:
        if self._cam_layer is None:
            return ()
        maps = []
        for j, res in enumerate(results):
            if not res.positive or res.key_slice is None:
                continue
            slab = int(np.argmax(slab_p[:, j]))
            x = prep.inputs[slab : slab + 1].to(self.loaded.device)
            cam = grad_cam(self.loaded.network, self._cam_layer, x, j).cpu()
            heat = to_input_plane(cam, prep)
            peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
            idx = res.key_slice.index
            maps.append(SaliencyMap(
                key=res.key, slice_index=idx, slice_id=res.key_slice.slice_id,
                heatmap=heat.astype(np.float32), peak_yx=(int(peak[0]), int(peak[1])),
                png=overlay_png(np.asarray(volume.array[idx], dtype=np.float32), heat)))
        return tuple(maps)
