"""Train the demo ICH classifier and segmenter on head CT phantoms and write a model directory.

The result is a demo: trained only on synthetic phantoms, it says nothing about real scans and
its card says so (``not_for_clinical_use: true``). Training draws phantoms from the wide
``train`` family (:mod:`inference.phantoms.families`); thresholds are chosen on a calibration
set of the same family (other seeds); the reported metrics come from the ``heldout`` family,
made with generator parameters training never used, and from the original generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..architectures import build_network
from ..cards import ModelCard, load_card, parse_card, sha256_file, write_card
from ..errors import ModelCardError
from ..evaluation.datasets import LabelledStudy, family_dataset, phantom_dataset
from ..evaluation.evaluate import SaliencyScore, evaluate, score_saliency
from ..evaluation.metrics import youden_threshold
from ..ich.labels import ICH_CLASSES, ICH_NAMES, ICH_SUBTYPES, ich_code
from ..ich.network import IchSegNet
from ..ich.pipeline import IchPipeline
from ..ich.preprocess import AIR_HU, resample_inplane, to_slabs, windows
from ..loaders import LoadedModel
from ..phantoms.families import FAMILIES
from ..phantoms.head_ct import family_cohort

WEIGHTS_FILE = "weights.pt"
NOTE = ("synthetic phantoms only; no real-patient performance is claimed. Per-class figures "
        "compare each class's probability with its threshold; the pipeline also calls a subtype "
        "positive only when 'any' is, which can only lower subtype sensitivity and raise its "
        "specificity. Masks and Dice follow the pipeline (masks of positive subtypes only).")


@dataclass(frozen=True)
class Augment:
    """Acquisition augmentation of training batches, drawn per sample (all its context slabs
    alike): a scanner's HU calibration shift of soft tissue (uniform +-``hu_shift``), a bone
    density scale (``bone_scale``), a smoother or sharper kernel (in-plane Gaussian blur of up
    to ``blur_px`` model pixels with probability ``p_blur``), and extra spatially correlated
    noise (``noise_hu`` at most, correlation up to ``noise_corr_px``, probability ``p_noise``).
    The ranges are fixed a priori from scanner physics, not fitted to any test family.

    ``p_fov`` (default 0: off) is the probability per sample of a tighter field of view: the
    slabs (and their masks) are zoomed about a random centre so one model cell is
    ``fov_cell_mm`` (uniform) wide, the head cut by the image edge where the zoom takes it
    there. Training phantoms give cells of about 1.4-2.3 mm (fields of view 180-300 mm on the
    128 grid); a 128 or 256 matrix with a 100-180 mm field of view gives 0.8-1.4 mm. The crop
    always keeps every mask pixel of the sample's centre slab, so its labels stay true; a centre
    slab labelled positive with no mask pixel on the grid (a sliver) is not zoomed, nor is a
    sample whose cells are already that fine.
    """

    hu_shift: float = 25.0
    bone_scale: tuple[float, float] = (0.75, 1.4)
    p_blur: float = 0.5
    blur_px: float = 1.5
    p_noise: float = 0.5
    noise_hu: float = 8.0
    noise_corr_px: float = 1.5
    enabled: bool = True
    p_fov: float = 0.0
    fov_cell_mm: tuple[float, float] = (0.8, 1.4)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_fov <= 1.0:
            raise ValueError("p_fov must be between 0 and 1")
        if not 0.1 <= self.fov_cell_mm[0] <= self.fov_cell_mm[1]:
            raise ValueError("fov_cell_mm must be an increasing range of positive sizes")


@dataclass(frozen=True)
class TrainConfig:
    """Sizes, seeds and optimiser settings; the defaults take about 12 minutes on 2 CPU cores.

    ``focus_class`` (a subtype; default none) is a class training should see more of: a
    ``focus_share`` of each batch's sampling mass goes to slabs with that subtype, and its slab
    loss and its mask loss weigh positives ``focus_pos_weight`` times. Without it training is
    the same as before these options existed.

    ``slab_mm`` is the model's slab thickness (the card's ``input.slice_spacing_mm``): thinner
    reconstructions are averaged into slabs about that thick, thicker slices are read one per
    slab. The default 5 mm is that of 0.2.0; 2.5 mm halves the dilution of a small bleed along z
    in thin-slice studies, at 1.8 times the training slabs (9,287 against 5,244).

    Training phantoms are ``matrix`` pixels square with at most ``max_slices`` slices;
    calibration and test phantoms ``eval_matrix`` square. ``legacy_shape`` is the shape of the
    original-generator test phantoms (``n_legacy_test`` of them; 0 skips that test).
    """

    n_train: int = 320
    n_calibration: int = 60
    n_test: int = 80
    n_legacy_test: int = 40
    matrix: int = 160
    max_slices: int = 48
    eval_matrix: int = 256
    legacy_shape: tuple[int, int, int] = (28, 256, 256)
    family: str = "train"
    test_family: str = "heldout"
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-3
    seg_weight: float = 1.0
    seed: int = 20250101
    threads: int = 2
    model_id: str = "ich-demo"
    version: str = "0.3.0"
    augment: Augment = field(default_factory=lambda: Augment())
    init_from: str | None = None
    focus_class: str | None = None
    focus_share: float = 0.0
    focus_pos_weight: float = 1.0
    slab_mm: float = 5.0

    def __post_init__(self) -> None:
        if self.focus_class is not None and self.focus_class not in ICH_SUBTYPES:
            raise ValueError(f"focus_class must be one of {ICH_SUBTYPES}")
        if not 0.0 <= self.focus_share < 1.0 or self.focus_pos_weight <= 0:
            raise ValueError("focus_share must be in [0, 1) and focus_pos_weight > 0")
        if not 0.5 <= self.slab_mm <= 10.0:
            raise ValueError("slab_mm must be between 0.5 and 10 mm")


def card_skeleton(cfg: TrainConfig) -> dict[str, Any]:
    """The card fields fixed before training (everything but weights and measured figures)."""
    return {
        "id": cfg.model_id, "version": cfg.version,
        "name": "InferNode demo ICH classifier and segmenter (phantom-trained)",
        "task": "ich-classification", "modality": "CT", "body_part": "HEAD",
        "intended_use": ("Demonstration and integration testing of the InferNode ICH pipeline on "
                         "synthetic head CT phantoms. Not a medical device."),
        "not_for_clinical_use": True, "license": "Apache-2.0",
        "input": {
            "matrix": [128, 128], "slice_spacing_mm": cfg.slab_mm, "context_slices": 1,
            "windows": [{"name": "brain", "center": 40, "width": 80},
                        {"name": "subdural", "center": 80, "width": 200},
                        {"name": "bone", "center": 600, "width": 2800}],
            "channels": 9,
        },
        "architecture": {"name": "infernode.IchSegNet", "params": {
            "in_channels": 9, "out_channels": len(ICH_CLASSES), "seg_channels": len(ICH_SUBTYPES),
            "features": [16, 32, 64, 128], "decoder": 24}},
        "labels": [{"key": k, "name": ICH_NAMES[k],
                    "code": {"value": ich_code(k).value, "scheme": ich_code(k).scheme,
                             "meaning": ich_code(k).meaning}, "threshold": 0.5}
                   for k in ICH_CLASSES],
        "explain": {"method": "grad-cam", "target_layer": "enc2"},
        "quality": QUALITY_GATE,
        "uncertainty": UNCERTAINTY,
    }


QUALITY_GATE: dict[str, Any] = {
    "min_slices": 8, "max_slice_spacing_mm": 7.5, "min_coverage_mm": 60.0,
    "foreground": -500.0, "intensity_range": [0.0, 80.0], "background_range": [-1200.0, -500.0],
    "max_metal_fraction": 0.002,
    "max_noise": 30.0, "max_motion_mm": 5.0}
"""The head CT input gate (docs/MODELS.md says why each value)."""
UNCERTAINTY: dict[str, Any] = {
    "method": "tta-flip", "classes": ["any"], "max_probability_spread": 0.2,
    "decisions_must_agree": True}
"""Mirror-image spread allowed on the study-level call (docs/MODELS.md)."""


class _SlabBank:
    """Resampled HU slabs of many studies (float16), their labels, and their subtype masks on
    the model grid (bit i = subtype i, a pixel set when at least half of it is that subtype);
    batches built on demand."""

    def __init__(self, card: ModelCard, cfg: TrainConfig, log: Callable[[str], None]) -> None:
        slabs, labels, bits, starts, ends, cells = [], [], [], [], [], []
        n = 0
        for ph in family_cohort(cfg.n_train, cfg.seed, cfg.family, cfg.matrix, cfg.max_slices):
            hu, slab_of_slice, _, _ = to_slabs(ph.volume.array, ph.volume.spacing, card.input)
            m = hu.shape[0]
            cells.append(torch.full((m,), model_cell_mm(ph.volume.array.shape[1:],
                                                        ph.volume.spacing, card)))
            ylab = np.zeros((m, len(ICH_CLASSES)), dtype=np.float32)
            np.maximum.at(ylab, slab_of_slice, ph.slice_labels.astype(np.float32))
            packed = torch.zeros((m, *card.input.matrix), dtype=torch.uint8)
            for i, key in enumerate(ICH_SUBTYPES):
                if key in ph.masks:
                    frac = _mask_slabs(ph.masks[key], slab_of_slice, m, card)
                    packed |= (frac >= 0.5).to(torch.uint8) << i
            slabs.append(hu.half())
            labels.append(torch.from_numpy(ylab))
            bits.append(packed)
            starts.append(torch.full((m,), n))
            ends.append(torch.full((m,), n + m - 1))
            n += m
        self.hu = torch.cat(slabs)
        self.y = torch.cat(labels)
        self.bits = torch.cat(bits)
        self.lo, self.hi = torch.cat(starts), torch.cat(ends)
        self.cell_mm = torch.cat(cells)
        self.card = card
        log(f"training slabs: {n}, positive for any: {int(self.y[:, 0].sum())}")

    def batch(self, idx: torch.Tensor, gen: torch.Generator, aug: Augment | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.card.input.context_slices
        hu = torch.stack([self.hu[torch.minimum(torch.maximum(idx + off, self.lo[idx]),
                                                self.hi[idx])].float()
                          for off in range(-c, c + 1)], dim=1)
        if aug is not None and aug.enabled:
            hu = augment_hu(hu, aug, gen)
        x = torch.cat([windows(hu[:, k], self.card.input) for k in range(2 * c + 1)], dim=1)
        shifts = torch.arange(len(ICH_SUBTYPES), dtype=torch.uint8)[None, :, None, None]
        seg = ((self.bits[idx][:, None] >> shifts) & 1).float()
        if aug is not None and aug.enabled and aug.p_fov > 0:
            hu, seg = fov_zoom(hu, seg, self.y[idx], self.cell_mm[idx], aug, gen)
        flip = torch.rand(idx.shape[0], generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        seg[flip] = seg[flip].flip(-1)
        return x, self.y[idx], seg


def model_cell_mm(hw: tuple[int, ...], spacing: tuple[float, float, float], card: ModelCard
                  ) -> float:
    """Width (mm) of one model-grid cell for slices of ``hw`` pixels of ``spacing``: the
    in-plane resampling keeps the aspect ratio, so the longer side fills the grid."""
    scale = min(card.input.matrix[0] / hw[0], card.input.matrix[1] / hw[1])
    return float(max(spacing[1], spacing[2]) / scale)


def fov_zoom(hu: torch.Tensor, seg: torch.Tensor, y: torch.Tensor, cell_mm: torch.Tensor,
             aug: Augment, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Field-of-view augmentation of (B, K, H, W) HU slabs and their (B, S, H, W) masks; see
    :class:`Augment` (``p_fov``, ``fov_cell_mm``). Masks are resampled bilinearly and kept
    where at least half covered. ``y`` (B, classes) are the centre slabs' labels, unchanged."""
    b, _, h, w = hu.shape
    pick = torch.rand(b, generator=gen) < aug.p_fov
    lo_mm, hi_mm = aug.fov_cell_mm
    target = lo_mm + (hi_mm - lo_mm) * torch.rand(b, generator=gen)
    u = torch.rand(b, 2, generator=gen)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    any_bits = seg.amax(dim=1)  # (B, H, W)
    for i in range(b):
        zoom = float(cell_mm[i] / target[i])
        if not bool(pick[i]) or zoom <= 1.0:
            continue
        present = seg[i].flatten(1).amax(dim=1) > 0
        if bool((y[i, 1:] > 0).logical_and(~present).any()):
            continue  # a labelled bleed with no mask pixel: its position is unknown
        # allowed centres (normalised, x then y) keep the crop inside the grid and every mask
        # pixel inside the crop; a lesion wider than the crop lowers the zoom to fit it
        span = []
        for profile, n in ((any_bits[i].amax(dim=0), w), (any_bits[i].amax(dim=1), h)):
            hits = torch.nonzero(profile > 0).flatten()
            span.append((2 * float(hits.min()) / n - 1, 2 * (float(hits.max()) + 1) / n - 1)
                        if hits.numel() else (1.0, -1.0))
        for a, c in span:
            if c - a > 2 / zoom:
                zoom = 2 / (c - a)
        half = 1 / zoom
        for j, (a, c) in enumerate(span):
            lo = -(1 - half) if c < a else max(-(1 - half), c - half)
            hi = (1 - half) if c < a else min(1 - half, a + half)
            theta[i, j, 2] = lo + (hi - lo) * float(u[i, j])
        theta[i, 0, 0] = theta[i, 1, 1] = half
    z = theta[:, 0, 0] < 1
    if not bool(z.any()):
        return hu, seg
    grid = F.affine_grid(theta[z], [int(z.sum()), 1, h, w], align_corners=False)
    hu, seg = hu.clone(), seg.clone()
    hu[z] = F.grid_sample(hu[z], grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
    seg[z] = (F.grid_sample(seg[z], grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False) >= 0.5).float()
    return hu, seg


def _gaussian_kernels(sigma: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """(B,) sigmas in pixels -> (B, 1, 2r+1, 2r+1) normalised Gaussian kernels."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(t[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    g = g / g.sum(dim=1, keepdim=True)
    return (g[:, :, None] * g[:, None, :])[:, None]


def _smooth(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each sample of (B, K, H, W) in-plane with its own Gaussian (B,) sigma."""
    b, k, h, w = x.shape
    ker = _gaussian_kernels(sigma).repeat_interleave(k, dim=0)
    pad = ker.shape[-1] // 2
    y = F.conv2d(F.pad(x.reshape(1, b * k, h, w), (pad,) * 4, mode="replicate"), ker,
                 groups=b * k)
    return y.reshape(b, k, h, w)


def augment_hu(hu: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Acquisition augmentation of (B, K, H, W) HU slabs (K context slabs of one sample share
    the draw); see :class:`Augment`. Air (< -500 HU) stays air."""
    b = hu.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)[:, None, None, None]

    tissue = hu > -500
    bone = hu > 300
    hu = torch.where(bone, 300 + (hu - 300) * u(*aug.bone_scale), hu)
    hu = torch.where(tissue, hu + u(-aug.hu_shift, aug.hu_shift), hu)
    blur = torch.rand(b, generator=gen) < aug.p_blur
    if bool(blur.any()):
        sig = aug.blur_px * torch.rand(int(blur.sum()), generator=gen)
        hu[blur] = _smooth(hu[blur], sig)
    noisy = torch.rand(b, generator=gen) < aug.p_noise
    if bool(noisy.any()):
        n = int(noisy.sum())
        sel = hu[noisy]
        noise = _smooth(torch.randn(sel.shape, generator=gen),
                        0.3 + (aug.noise_corr_px - 0.3) * torch.rand(n, generator=gen))
        noise = noise / noise.flatten(1).std(dim=1).clamp(min=1e-6)[:, None, None, None]
        amp = aug.noise_hu * torch.rand(n, generator=gen)[:, None, None, None]
        hu[noisy] = torch.where(sel > -500, sel + amp * noise, sel)
    return hu


def _mask_slabs(mask: np.ndarray, slab_of_slice: np.ndarray, m: int, card: ModelCard
                ) -> torch.Tensor:
    """Fraction (m, H, W) of each model-grid pixel of each slab covered by ``mask``."""
    # area resampling is linear and pads with air: shift the mask by AIR_HU so padding is 0
    small, _ = resample_inplane(mask.astype(np.float32) + AIR_HU, card.input.matrix)
    small -= AIR_HU
    sums = torch.zeros((m, *card.input.matrix), dtype=torch.float32)
    sums.index_add_(0, torch.from_numpy(slab_of_slice), small)
    counts = torch.bincount(torch.from_numpy(slab_of_slice), minlength=m).float()
    return sums / counts[:, None, None]


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per subtype over the batch, averaged over subtypes present in it."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(0, 2, 3))
    denom = p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    present = target.sum(dim=(0, 2, 3)) > 0
    if not bool(present.any()):
        return logits.new_zeros(())
    return (1 - (2 * inter + 1) / (denom + 1))[present].mean()


def _sampling_weights(y: torch.Tensor, focus: int | None = None, focus_share: float = 0.0
                      ) -> torch.Tensor:
    # half of each batch from slabs with any haemorrhage, rarer subtypes up-weighted
    pos = y[:, 0] > 0
    w = torch.where(pos, 0.5 / max(int(pos.sum()), 1), 0.5 / max(int((~pos).sum()), 1))
    freq = y[:, 1:].sum(0).clamp(min=1)
    boost = 1 + (y[:, 1:] * (freq.max() / freq)).max(dim=1).values.clamp(max=4) * 0.25
    w = w * boost
    if focus is None or focus_share <= 0:
        return w
    # a focus_share of the sampling mass spread evenly over the focus class's positive slabs
    hit = y[:, focus] > 0
    if not bool(hit.any()):
        return w
    return (1 - focus_share) * w / w.sum() + focus_share * hit.float() / int(hit.sum())


def _pos_weights(cfg: TrainConfig) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Positive-class weights of the slab loss (per class) and of the mask loss (per subtype,
    broadcast over pixels); none without a focus class."""
    if cfg.focus_class is None or cfg.focus_pos_weight == 1.0:
        return None, None
    slab = torch.ones(len(ICH_CLASSES))
    slab[ICH_CLASSES.index(cfg.focus_class)] = cfg.focus_pos_weight
    mask = torch.ones(len(ICH_SUBTYPES), 1, 1)
    mask[ICH_SUBTYPES.index(cfg.focus_class)] = cfg.focus_pos_weight
    return slab, mask


CAM_LAYERS = ("enc1", "enc2", "enc3")


def train_ich(out_dir: Path, cfg: TrainConfig = TrainConfig(),
              log: Callable[[str], None] = print) -> ModelCard:
    """Train, calibrate, evaluate on held-out phantoms, write ``out_dir``.

    Writes ``weights.pt`` (state_dict) and ``model.yaml``; returns the final card.
    """
    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    net = fit(cfg, log)
    torch.save(net.state_dict(), out_dir / WEIGHTS_FILE)
    return finalize(out_dir, net, cfg, log, fit_seconds=time.perf_counter() - t_start)


def fit(cfg: TrainConfig, log: Callable[[str], None] = print) -> torch.nn.Module:
    """Train the network (classification and segmentation losses together) on ``cfg.n_train``
    phantom studies of ``cfg.family``; returns it in eval mode."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    provisional = parse_card({**card_skeleton(cfg), "weights": {"format": "state_dict", "files": [
        {"path": WEIGHTS_FILE, "sha256": "0" * 64}]}})
    bank = _SlabBank(provisional, cfg, log)
    assert provisional.architecture is not None
    net = build_network(provisional.architecture.name, provisional.architecture.params)
    if not isinstance(net, IchSegNet):
        raise TypeError("the ICH trainer needs an IchSegNet")
    if cfg.init_from:
        net.load_state_dict(torch.load(cfg.init_from, map_location="cpu", weights_only=True))
        log(f"continuing from {cfg.init_from}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, bank.hu.shape[0] // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs
                                                * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    focus = None if cfg.focus_class is None else ICH_CLASSES.index(cfg.focus_class)
    weights = _sampling_weights(bank.y, focus, cfg.focus_share)
    slab_pw, mask_pw = _pos_weights(cfg)
    if focus is not None:
        log(f"focus on {cfg.focus_class}: {int((bank.y[:, focus] > 0).sum())} slabs, "
            f"share {cfg.focus_share}, positive weight {cfg.focus_pos_weight}")
    for epoch in range(cfg.epochs):
        net.train()
        total = 0.0
        for _ in range(steps_per_epoch):
            idx = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen)
            x, y, seg = bank.batch(idx, gen, cfg.augment)
            logits, seg_logits = net.forward_all(x)
            loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=slab_pw) + (
                cfg.seg_weight * (
                    F.binary_cross_entropy_with_logits(seg_logits, seg, pos_weight=mask_pw)
                    + _dice_loss(seg_logits, seg)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / steps_per_epoch:.4f} "
            f"({time.perf_counter() - t_start:.0f} s)")
    return net.eval()


def finalize(out_dir: Path, net: torch.nn.Module, cfg: TrainConfig,
             log: Callable[[str], None] = print, fit_seconds: float | None = None) -> ModelCard:
    """Calibrate thresholds and pick the Grad-CAM layer on the calibration phantoms, measure
    on the test phantoms, and write the card for ``out_dir/weights.pt``."""
    t_start = time.perf_counter()
    digest = sha256_file(out_dir / WEIGHTS_FILE)
    card = parse_card({**card_skeleton(cfg), **_kept_sections(out_dir), "weights": {
        "format": "state_dict", "files": [{"path": WEIGHTS_FILE, "sha256": digest}]}})
    pipe = IchPipeline(LoadedModel(card, out_dir, net, torch.device("cpu")))
    calibration = list(family_dataset(cfg.n_calibration, cfg.seed + 1, cfg.family,
                                      cfg.eval_matrix, cfg.max_slices))
    thresholds = _calibrate(pipe, calibration, log)
    card = parse_card({**card.model_dump(mode="json"), "labels": [
        {**lab.model_dump(mode="json"), "threshold": round(thresholds[lab.key], 4)}
        for lab in card.labels]})
    pipe = IchPipeline(LoadedModel(card, out_dir, net, torch.device("cpu")))
    layer, layer_rates = _select_cam_layer(pipe, calibration, log)
    card = parse_card({**card.model_dump(mode="json"),
                       "explain": {"method": "grad-cam", "target_layer": layer}})
    pipe = IchPipeline(LoadedModel(card, out_dir, net, torch.device("cpu")))
    test_seed = cfg.seed + 2
    report = evaluate(pipe, family_dataset(cfg.n_test, test_seed, cfg.test_family,
                                           cfg.eval_matrix, cfg.max_slices),
                      f"held-out phantom family '{cfg.test_family}'", card_thresholds(card),
                      segmentation=True)
    log(f"held-out family: {report.as_dict()}")
    metrics: dict[str, Any] = {
        **report.as_dict(), "family": cfg.test_family, "seed": test_seed,
        "matrix": cfg.eval_matrix, "max_slices": cfg.max_slices,
        "family_parameters": asdict(FAMILIES[cfg.test_family]),
        "note": NOTE}
    if cfg.n_legacy_test:
        legacy = evaluate(pipe, phantom_dataset(cfg.n_legacy_test, cfg.seed + 3,
                                                cfg.legacy_shape),
                          "original phantom generator (inference.phantoms defaults)",
                          card_thresholds(card), explain=False, segmentation=True)
        metrics["original_generator"] = {**legacy.as_dict(), "seed": cfg.seed + 3,
                                         "shape": list(cfg.legacy_shape)}
        log(f"original generator: {metrics['original_generator']}")
    final = parse_card({
        **card.model_dump(mode="json"),
        "training_data": {
            "source": "inference.phantoms head CT phantoms (synthetic)",
            "train": {"studies": cfg.n_train, "seed": cfg.seed, "family": cfg.family,
                      "family_parameters": asdict(FAMILIES[cfg.family]),
                      "matrix": cfg.matrix, "max_slices": cfg.max_slices},
            "calibration": {"studies": cfg.n_calibration, "seed": cfg.seed + 1,
                            "family": cfg.family, "matrix": cfg.eval_matrix,
                            "threshold_rule": "max Youden J per class, study level",
                            "gradcam_layer_rule": "highest peak-in-lesion rate",
                            "gradcam_layer_hit_rates": layer_rates},
            "segmentation": "one sigmoid map per subtype; mask = probability >= 0.5, only "
                            "for subtypes called positive",
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("model_id",)},
            "fit_seconds": None if fit_seconds is None else round(fit_seconds, 1),
            "calibrate_and_test_seconds": round(time.perf_counter() - t_start, 1),
        },
        "metrics": metrics,
    })
    write_card(final, out_dir)
    log(f"wrote {out_dir}")
    return final


def _kept_sections(out_dir: Path) -> dict[str, Any]:
    """Sections of an existing card in ``out_dir`` that other tools write (the explanation
    maps' faithfulness figures): a retrain keeps them."""
    try:
        old = load_card(out_dir)
    except ModelCardError:
        return {}
    return {"explainability": old.explainability} if old.explainability else {}


def card_thresholds(card: ModelCard) -> dict[str, float]:
    return {lab.key: lab.threshold for lab in card.labels}


def _calibrate(pipe: IchPipeline, studies: list[LabelledStudy], log: Callable[[str], None]
               ) -> dict[str, float]:
    ys: dict[str, list[int]] = {k: [] for k in ICH_CLASSES}
    ss: dict[str, list[float]] = {k: [] for k in ICH_CLASSES}
    for study in studies:
        pred = pipe.predict(study.volume, explain=False)
        for k in ICH_CLASSES:
            ys[k].append(study.labels[k])
            ss[k].append(pred.result(k).probability)
    th = {k: youden_threshold(np.array(ys[k]), np.array(ss[k])) for k in ICH_CLASSES}
    log(f"calibrated thresholds: { {k: round(v, 3) for k, v in th.items()} }")
    return th


def _select_cam_layer(pipe: IchPipeline, studies: list[LabelledStudy],
                      log: Callable[[str], None]) -> tuple[str, dict[str, float]]:
    rates: dict[str, float] = {}
    for layer in CAM_LAYERS:
        pipe.set_explain_layer(layer)
        score = SaliencyScore()
        for study in studies:
            if study.labels["any"]:
                score_saliency(pipe.predict(study.volume), study, score)
        rates[layer] = round(score.hit_rate, 3) if score.total else 0.0
    best = max(CAM_LAYERS, key=lambda name: rates[name])
    log(f"Grad-CAM peak-in-lesion rate by layer (calibration set): {rates}; using {best}")
    return best, rates
