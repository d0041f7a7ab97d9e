"""Adapter for the BLAST-CT v1 ensemble (12 DeepMedic networks, Apache-2.0).

Network code comes from the ``blast-ct`` package (``blast_ct.models.DeepMedic``); the weights
stay in their own directory (configured, never copied into the project). Preprocessing follows
the package's config: resample to 1 mm isotropic, clip to [-15, 100] HU and scale to [-1, 1].
Classes (output index): 0 background, 1 IPH, 2 extra-axial haemorrhage, 3 perilesional
oedema, 4 IVH. The ensemble averages softmax probabilities and takes the arg-max.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .cards import CARD_FILE, ModelCard, load_card, parse_card
from .codes import code_for
from .errors import InputError, ModelCardError, ModelLoadError, TransientInferenceError
from .types import (
    ClassResult,
    KeySlice,
    ModelInfo,
    Prediction,
    SegmentMask,
    StudyInput,
    Timings,
    Volume,
)

LOWER_HU, UPPER_HU = -15.0, 100.0
FIELD_OF_VIEW = 80  # input voxels beyond the output patch (DeepMedic receptive field)
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("intraparenchymal", "Intraparenchymal haemorrhage", "intraparenchymal_hemorrhage"),
    ("extra_axial", "Extra-axial haemorrhage", "extra_axial_hemorrhage"),
    ("oedema", "Perilesional oedema", "cerebral_edema"),
    ("intraventricular", "Intraventricular haemorrhage", "intraventricular_hemorrhage"),
)
N_MODELS = 12


def is_blast_ct_dir(path: Path) -> bool:
    return (path / "SHA256SUMS").is_file() and (path / "model_1.pt").is_file()


def blast_ct_card(model_dir: Path) -> ModelCard:
    """The card of a BLAST-CT weights directory: ``model.yaml`` if present, else one built
    from its ``SHA256SUMS`` (the digests the provider published)."""
    if (model_dir / CARD_FILE).is_file():
        return load_card(model_dir)
    sums = {}
    for line in (model_dir / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    files = [{"path": f"model_{i}.pt", "sha256": sums.get(f"model_{i}.pt", "")}
             for i in range(1, N_MODELS + 1)]
    missing = [f["path"] for f in files if not f["sha256"]]
    if missing:
        raise ModelCardError(f"blast-ct: SHA256SUMS lacks {', '.join(missing)}")
    labels = [{"key": k, "name": n, "threshold": 0.5,
               "code": {"value": code_for(c).value, "scheme": code_for(c).scheme,
                        "meaning": code_for(c).meaning}}
              for k, n, c in CLASSES]
    return parse_card({
        "id": "blast-ct", "version": "1", "name": "BLAST-CT v1 ensemble (DeepMedic x12)",
        "task": "ich-segmentation", "modality": "CT", "manufacturer": "BioMedIA (Imperial College)",
        "intended_use": "Research: segmentation of traumatic lesions in non-contrast head CT.",
        "not_for_clinical_use": True, "license": "Apache-2.0",
        "input": {"windows": [{"name": "blast", "center": (LOWER_HU + UPPER_HU) / 2,
                               "width": UPPER_HU - LOWER_HU}], "channels": 1},
        "weights": {"format": "blast_ct_ensemble", "files": files},
        "labels": labels,
        "training_data": {"source": "see PROVENANCE.md in the weights directory"},
    }, f"{model_dir}/SHA256SUMS")


class BlastCtPipeline:
    """Loads all ensemble members strictly; segments whole volumes or a region of interest."""

    pipeline = "ich"

    def __init__(self, card: ModelCard, model_dir: Path, device: torch.device,
                 patch_output: int = 30, min_volume_ml: float = 0.1, amp: bool = True) -> None:
        try:
            from blast_ct.models.deepmedic import DeepMedic
        except ImportError as exc:
            raise ModelLoadError("the blast-ct package is not installed") from exc
        if patch_output % 5:
            raise ValueError("patch_output must be a multiple of 5 (DeepMedic sub-sampling)")
        self.card, self.directory, self.device = card, model_dir, device
        self.patch_output, self.min_volume_ml, self.amp = patch_output, min_volume_ml, amp
        self.networks: list[torch.nn.Module] = []
        for wf in card.weights.files:
            net = DeepMedic(input_channels=1, num_classes=len(CLASSES) + 1)
            state = torch.load(str(model_dir / wf.path), map_location="cpu", weights_only=True)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelLoadError(f"blast-ct: {wf.path} does not fit DeepMedic: {exc}") from exc
            self.networks.append(net.to(device).eval())

    @property
    def info(self) -> ModelInfo:
        c = self.card
        return ModelInfo(model_id=c.id, version=c.version, name=c.name,
                         weights_sha256=c.weights_sha256, manufacturer=c.manufacturer,
                         not_for_clinical_use=c.not_for_clinical_use)

    def warmup(self) -> None:
        """One smallest-patch pass of the first member (lazy initialisation, CUDA kernels)."""
        with torch.inference_mode():
            self.networks[0](smoke_input().to(self.device))

    def probabilities(self, image: torch.Tensor, roi: tuple[slice, ...] | None = None,
                      n_models: int | None = None) -> torch.Tensor:
        """Ensemble softmax (C, z, y, x) of a normalised 1 mm image (z, y, x); voxels outside
        ``roi`` (1 mm grid) are left as background."""
        nets = self.networks[: n_models or len(self.networks)]
        shape = image.shape
        prob = torch.zeros((len(CLASSES) + 1, *shape))
        prob[0] = 1.0
        box = roi or tuple(slice(0, s) for s in shape)
        o, half = self.patch_output, FIELD_OF_VIEW // 2
        padded = F.pad(image[None, None], (half, half + o) * 3, value=-1.0)[0, 0]
        starts = [range(max(b.start or 0, 0), min(b.stop or s, s), o)
                  for b, s in zip(box, shape, strict=True)]
        for z in starts[0]:
            for y in starts[1]:
                for x in starts[2]:
                    patch = padded[z : z + o + 2 * half, y : y + o + 2 * half,
                                   x : x + o + 2 * half][None, None].to(self.device)
                    acc = torch.zeros((len(CLASSES) + 1, o, o, o), device=self.device)
                    with torch.inference_mode():
                        for net in nets:
                            acc += self._forward(net, patch)
                    acc = (acc / len(nets)).cpu()
                    dz, dy, dx = (min(o, shape[0] - z), min(o, shape[1] - y), min(o, shape[2] - x))
                    prob[:, z : z + dz, y : y + dy, x : x + dx] = acc[:, :dz, :dy, :dx]
        return prob

    def _forward(self, net: torch.nn.Module, patch: torch.Tensor) -> torch.Tensor:
        try:
            if self.device.type == "cuda" and self.amp:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    logits, _ = net(patch)
            else:
                logits, _ = net(patch)
        except torch.OutOfMemoryError as exc:
            raise TransientInferenceError("device out of memory in BLAST-CT") from exc
        return torch.softmax(logits.float(), dim=1)[0]

    def predict(self, volume: Volume, explain: bool = False,
                roi: tuple[slice, slice, slice] | None = None,
                n_models: int | None = None) -> Prediction:
        """Segment ``volume`` (HU); ``roi`` limits the work to a box of input voxels (z, y, x).

        Masks are returned on the input grid; volumes are voxel count x voxel volume there.
        """
        t0 = time.perf_counter()
        image = to_isotropic(volume)
        roi_iso = None
        if roi is not None:
            roi_iso = tuple(slice(int(r.start * s), int(np.ceil(r.stop * s)))
                            for r, s in zip(roi, volume.spacing, strict=True))
        t1 = time.perf_counter()
        prob = self.probabilities(image, roi_iso, n_models)
        labels_iso = prob.argmax(0).to(torch.uint8)
        t2 = time.perf_counter()
        labels = F.interpolate(labels_iso[None, None].float(), size=volume.array.shape,
                               mode="nearest")[0, 0].to(torch.uint8).numpy()
        results, masks = [], []
        for i, (key, name, _c) in enumerate(CLASSES, start=1):
            lab = self.card.label(key)
            mask = (labels == i).astype(np.uint8)
            count = int(mask.sum())
            vol_ml = count * volume.voxel_volume_ml
            p = float(prob[i].max())
            key_slice = None
            if count:
                k = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
                key_slice = KeySlice(index=k, slice_id=volume.slice_id(k), probability=p)
            positive = vol_ml >= self.min_volume_ml
            results.append(ClassResult(key=key, name=name, code=lab.code.to_code(),
                                       probability=p, threshold=lab.threshold,
                                       positive=positive, key_slice=key_slice))
            if count:
                masks.append(SegmentMask(key=key, name=name, code=lab.code.to_code(), mask=mask,
                                         volume_ml=vol_ml, voxel_count=count))
        t3 = time.perf_counter()
        return Prediction(
            pipeline=self.pipeline, model=self.info, classes=tuple(results),
            slice_probabilities=np.zeros((0, len(CLASSES)), dtype=np.float32),
            slice_ids=tuple(volume.slice_id(i) for i in range(volume.array.shape[0])),
            masks=tuple(masks),
            timings=Timings(preprocess_s=t1 - t0, inference_s=t2 - t1, explain_s=0.0,
                            total_s=t3 - t0, device=str(self.device)))


    def predict_input(self, inp: StudyInput, explain: bool = False, **options: Any
                      ) -> Prediction:
        """:meth:`predict` on the input's ``ct`` channel; options ``roi`` and ``n_models``."""
        if "ct" not in inp.volumes:
            raise InputError("BLAST-CT needs a 'ct' channel")
        return self.predict(inp.volumes["ct"], explain=explain, roi=options.get("roi"),
                            n_models=options.get("n_models"))


def to_isotropic(volume: Volume) -> torch.Tensor:
    """Trilinear resampling to 1 mm and BLAST-CT's window normalisation to [-1, 1]."""
    size = tuple(max(1, round(n * s)) for n, s in zip(volume.array.shape, volume.spacing,
                                                      strict=True))
    x = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None, None]
    iso = F.interpolate(x, size=size, mode="trilinear", align_corners=False)[0, 0]
    iso = iso.clamp_(LOWER_HU, UPPER_HU)
    iso = (2 * iso - LOWER_HU - UPPER_HU) / (UPPER_HU - LOWER_HU)
    return iso


def smoke_input() -> torch.Tensor:
    """The smallest valid DeepMedic input (85^3 -> 5^3 output), for verification."""
    return torch.full((1, 1, FIELD_OF_VIEW + 5, FIELD_OF_VIEW + 5, FIELD_OF_VIEW + 5), -1.0)
