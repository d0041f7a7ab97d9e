"""Adapter for the BLAST-CT v1 ensemble (12 DeepMedic networks, Apache-2.0).

Network code comes from the ``blast-ct`` package (``blast_ct.models.DeepMedic``); the weights
stay in their own directory (configured, never copied into the project). Preprocessing follows
the package's config: resample to 1 mm isotropic, clip to [-15, 100] HU and scale to [-1, 1].
Classes (output index): 0 background, 1 IPH, 2 extra-axial haemorrhage, 3 perilesional
oedema, 4 IVH. The ensemble averages softmax probabilities and takes the arg-max.

Geometry of DeepMedic (``blast_ct.models.deepmedic``), which decides the patch shapes:

- Three pathways see the same input at sub-sampling factors 5, 3 and 1. Each takes every s-th
  voxel (``DownSample``: offset s // 2), applies 8 valid 3x3x3 convolutions (8 voxels lost on
  each side at its own resolution) and repeats each voxel s times (nearest ``UpSample``); a
  1x1x1 head fuses them. Every layer is local, so the network is fully convolutional: an output
  patch of any size can be computed in one pass.
- The factor-5 pathway fixes the input/output relation: the input must be a multiple of 5 and
  the output is input - 80 (``FIELD_OF_VIEW``: 8 convolutions x 2 voxels x 5), so every output
  extent is a multiple of 5; axes are independent, so patches need not be cubes.
- The sub-sampled pathways take their samples on a grid anchored at the patch, not at the
  image: the factor-5 grid repeats every 5 output voxels, the factor-3 grid every 3 when the
  output extent is a multiple of 3 (otherwise the centre crop shifts it by one). With output
  extents and output starts both multiples of ``GRID`` = 15 = lcm(5, 3), every patch samples
  the same global grid, so any tiling built that way gives the same result as BLAST-CT's 30^3
  output tiles (up to floating-point summation order), and a whole volume can be one patch.

Large patches cost fewer operations per output voxel (a 30^3 tile computes its 110^3 input for
27,000 outputs) but need memory in proportion to their size: about ``BYTES_PER_VOXEL`` per
output voxel, one member at a time. The patch is as large as that budget allows: the whole
padded volume in one pass when it fits (a GPU), else a few large blocks (a CPU).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
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
FIELD_OF_VIEW = 80  # input voxels beyond the output patch on each axis (40 on each side)
GRID = 15  # lcm of the sub-sampling factors 5 and 3: patch extents and starts are multiples
REFERENCE_TILE = 30  # BLAST-CT's own output tile (110^3 input, its training patch size)
BYTES_PER_VOXEL = 6000  # peak memory per output voxel of one float32 pass (measured ~5.5 kB)
CPU_MEMORY_SHARE = 0.25  # of the available memory a CPU pass may use (the node runs beside it)
CUDA_MEMORY_SHARE = 0.6  # of the free device memory
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("intraparenchymal", "Intraparenchymal haemorrhage", "intraparenchymal_hemorrhage"),
    ("extra_axial", "Extra-axial haemorrhage", "extra_axial_hemorrhage"),
    ("oedema", "Perilesional oedema", "cerebral_edema"),
    ("intraventricular", "Intraventricular haemorrhage", "intraventricular_hemorrhage"),
)
N_MODELS = 12
Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class PatchPlan:
    """Output patches (z, y, x boxes on the 1 mm grid, possibly reaching past the image) that
    cover ``box``; every start and extent is a multiple of :data:`GRID`."""

    box: Box
    patches: tuple[Box, ...]
    block: tuple[int, int, int]


def _up(n: float, step: int = GRID) -> int:
    return max(step, math.ceil(n / step) * step)


def plan_patches(shape: tuple[int, ...], box: Box | None = None,
                 max_voxels: int | None = None, tile: int | None = None) -> PatchPlan:
    """Cover ``box`` (default: the whole ``shape``) with output patches.

    ``tile`` (a multiple of :data:`GRID`) gives fixed cubes, e.g. :data:`REFERENCE_TILE`;
    otherwise one block as large as ``max_voxels`` output voxels allows (None: no limit): the
    whole box when it fits, else the box's largest axis halved until it does (never below
    ``GRID``).
    Raises ValueError for a tile that is not a positive multiple of :data:`GRID`.
    """
    full = box or (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    bz, by, bx = (slice(max(b.start or 0, 0), min(s if b.stop is None else b.stop, s))
                  for b, s in zip(full, shape, strict=True))
    box = (bz, by, bx)
    lo = [b.start // GRID * GRID for b in box]
    hi = [_up(b.stop) for b in box]
    if tile is not None:
        if tile <= 0 or tile % GRID:
            raise ValueError(f"patch_output must be a positive multiple of {GRID} "
                             "(DeepMedic sub-sampling factors 5 and 3)")
        block = [tile] * 3
    else:
        block = [h - low for h, low in zip(hi, lo, strict=True)]
        limit = math.inf if max_voxels is None else max(max_voxels, GRID**3)
        while math.prod(block) > limit and max(block) > GRID:
            i = int(np.argmax(block))
            block[i] = _up(block[i] / 2)
    starts = [range(low, h, b) for low, h, b in zip(lo, hi, block, strict=True)]
    patches: list[Box] = []
    for st in itertools.product(*starts):
        z, y, x = (slice(s, min(s + b, h) if tile is None else s + b)
                   for s, b, h in zip(st, block, hi, strict=True))
        patches.append((z, y, x))
    return PatchPlan(box=box, patches=tuple(patches), block=(block[0], block[1], block[2]))


def memory_budget_voxels(device: torch.device) -> int:
    """Output voxels one pass may hold: a share of the free CUDA memory, or of the host's
    available memory (``MemAvailable`` in /proc/meminfo; 4 GiB assumed where it is absent)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_SHARE / BYTES_PER_VOXEL)
    available = 4 * 2**30
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(available * CPU_MEMORY_SHARE / BYTES_PER_VOXEL)


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
    """Loads all ensemble members strictly; segments whole volumes or a region of interest.

    ``n_models`` members run per study: by default one on a CPU, the whole ensemble on CUDA.
    ``patch_output`` None (default) makes output patches as large as ``max_patch_voxels``
    (default: from the free memory, :func:`memory_budget_voxels`) allows; a multiple of
    :data:`GRID` instead gives fixed cubic tiles (30: BLAST-CT's own tiling). AMP (float16
    autocast) is used on CUDA only.
    """

    pipeline = "ich"

    def __init__(self, card: ModelCard, model_dir: Path, device: torch.device,
                 patch_output: int | None = None, min_volume_ml: float = 0.1, amp: bool = True,
                 n_models: int | None = None, max_patch_voxels: int | None = None) -> None:
        try:
            from blast_ct.models.deepmedic import DeepMedic
        except ImportError as exc:
            raise ModelLoadError("the blast-ct package is not installed") from exc
        if patch_output is not None:
            plan_patches((GRID,) * 3, tile=patch_output)  # raises ValueError when not allowed
        self.card, self.directory, self.device = card, model_dir, device
        self.patch_output, self.min_volume_ml, self.amp = patch_output, min_volume_ml, amp
        self.max_patch_voxels = max_patch_voxels
        self.networks: list[torch.nn.Module] = []
        for wf in card.weights.files:
            net = DeepMedic(input_channels=1, num_classes=len(CLASSES) + 1)
            state = torch.load(str(model_dir / wf.path), map_location="cpu", weights_only=True)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelLoadError(f"blast-ct: {wf.path} does not fit DeepMedic: {exc}") from exc
            self.networks.append(net.to(device).eval())
        default = len(self.networks) if device.type == "cuda" else 1
        self.n_models = min(n_models or default, len(self.networks))

    @property
    def info(self) -> ModelInfo:
        return self.card.info

    def warmup(self) -> None:
        """One smallest-patch pass of the first member (lazy initialisation, CUDA kernels)."""
        with torch.inference_mode():
            self.networks[0](smoke_input().to(self.device))

    def probabilities(self, image: torch.Tensor, roi: Box | None = None,
                      n_models: int | None = None, patch_output: int | None = None
                      ) -> torch.Tensor:
        """Ensemble softmax (C, z, y, x) of a normalised 1 mm image (z, y, x); voxels outside
        ``roi`` (1 mm grid) are left as background.

        Raises TransientInferenceError when even the smallest patch does not fit the device.
        """
        nets = self.networks[: n_models or self.n_models]
        tile = patch_output or self.patch_output
        budget = self.max_patch_voxels or memory_budget_voxels(self.device)
        while True:
            plan = plan_patches(tuple(image.shape), roi, budget, tile)
            try:
                return self._run(image, plan, nets)
            except torch.OutOfMemoryError as exc:
                # the estimate was too optimistic (fragmentation, another process): halve
                if tile is not None or math.prod(plan.block) <= GRID**3:
                    raise TransientInferenceError("device out of memory in BLAST-CT") from exc
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                budget = math.prod(plan.block) // 2

    def _run(self, image: torch.Tensor, plan: PatchPlan, nets: list[torch.nn.Module]
             ) -> torch.Tensor:
        shape = tuple(image.shape)
        prob = torch.zeros((len(CLASSES) + 1, *shape))
        prob[0] = 1.0
        half = FIELD_OF_VIEW // 2
        after = [max(p[i].stop for p in plan.patches) - shape[i] for i in range(3)]
        padded = F.pad(image[None, None], (half, half + max(after[2], 0),
                                           half, half + max(after[1], 0),
                                           half, half + max(after[0], 0)), value=-1.0)[0, 0]
        for patch in plan.patches:
            # padded index = image index + half: this slice is the patch's input
            inp = padded[tuple(slice(p.start, p.stop + FIELD_OF_VIEW) for p in patch)]
            inp = inp[None, None].to(self.device)
            acc: torch.Tensor | None = None
            with torch.inference_mode():
                for net in nets:
                    out = self._forward(net, inp)
                    acc = out if acc is None else acc.add_(out)
            assert acc is not None
            dst = tuple(slice(max(p.start, b.start), min(p.stop, b.stop))
                        for p, b in zip(patch, plan.box, strict=True))
            if any(d.stop <= d.start for d in dst):
                continue
            src = tuple(slice(d.start - p.start, d.stop - p.start)
                        for d, p in zip(dst, patch, strict=True))
            prob[(slice(None), *dst)] = (acc[(slice(None), *src)] / len(nets)).cpu()
        return prob

    def _forward(self, net: torch.nn.Module, patch: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and self.amp:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                logits, _ = net(patch)
        else:
            logits, _ = net(patch)
        return torch.softmax(logits.float(), dim=1)[0]

    def predict(self, volume: Volume, explain: bool = False,
                roi: tuple[slice, slice, slice] | None = None,
                n_models: int | None = None, patch_output: int | None = None) -> Prediction:
        """Segment ``volume`` (HU); ``roi`` limits the work to a box of input voxels (z, y, x);
        ``n_models`` and ``patch_output`` override the pipeline's settings for this call.

        Masks are returned on the input grid; volumes are voxel count x voxel volume there.
        """
        t0 = time.perf_counter()
        image = to_isotropic(volume)
        roi_iso: Box | None = None
        if roi is not None:
            z, y, x = (slice(int(r.start * s), int(np.ceil(r.stop * s)))
                       for r, s in zip(roi, volume.spacing, strict=True))
            roi_iso = (z, y, x)
        t1 = time.perf_counter()
        prob = self.probabilities(image, roi_iso, n_models, patch_output)
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
        """:meth:`predict` on the input's ``ct`` channel; options ``roi``, ``n_models`` and
        ``patch_output``."""
        if "ct" not in inp.volumes:
            raise InputError("BLAST-CT needs a 'ct' channel")
        return self.predict(inp.volumes["ct"], explain=explain, roi=options.get("roi"),
                            n_models=options.get("n_models"),
                            patch_output=options.get("patch_output"))


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
