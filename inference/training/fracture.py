"""Train the demo fracture detector on synthetic radiographs and write a model directory.

A 2-D MONAI UNet with a centre-heatmap head (heatmap + log distances to the four box edges,
see :mod:`inference.fracture.decode`) trained on random crops of ``train`` family radiographs
(focal loss on the heatmap; L1 on the log distances and GIoU of the decoded box around each
centre, so box sizes do not collapse to the mean),
preprocessed exactly as the pipeline does (long side to the working size, percentile
normalisation). Figures are measured on the ``heldout`` family (other bone widths, cortex,
texture, contrast, noise model, fracture line widths and tilts, image sizes up to 3000 px). A
demo: synthetic data only, its card says ``not_for_clinical_use: true``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..architectures import build_network
from ..cards import ModelCard, parse_card, sha256_file, write_card
from ..codes import CODE_TABLE
from ..evaluation.detection import (
    DetectionCase,
    ImageResult,
    average_precision,
    evaluate_detection,
    phantom_detection_cases,
)
from ..evaluation.metrics import roc_auc, youden_threshold
from ..fracture.decode import EDGES, HEAT, OUT_CHANNELS, decode, flip_output, targets
from ..fracture.params import FractureParams
from ..fracture.pipeline import METHOD, FracturePipeline
from ..fracture.preprocess import Working, box_to_input, to_working
from ..phantoms.radiograph import BODY_PARTS, make_radiograph, radiograph_cohort

WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Sizes, seeds and optimiser settings; the defaults take about 25 minutes on 2 CPU
    cores."""

    n_train: int = 1000
    n_val: int = 100
    n_test: int = 80
    steps: int = 4000
    batch_size: int = 16
    crop: int = 128
    lr: float = 3e-3
    seed: int = 20261204
    val_seed: int = 20261206
    test_seed: int = 20261205
    threads: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    size_weight: float = 1.0
    giou_weight: float = 1.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    fit_minutes: float | None = None  # stop (and finish the schedule) by this wall time
    init_from: str | None = None  # a weights.pt of the same architecture to continue from
    model_id: str = "fracture-demo"
    version: str = "0.1.0"


QUALITY_GATE: dict[str, Any] = {
    "min_matrix": 256, "min_dynamic_range": 0.05, "max_clipped_fraction": 0.6}
"""The radiograph input gate (docs/MODELS.md says why each value)."""
UNCERTAINTY: dict[str, Any] = {
    "method": "tta-flip", "classes": ["fracture"], "max_probability_spread": 0.17,
    "per_image": True, "decisions_must_agree": False}
"""Mirror-image spread allowed per image, set from the held-out family with
bench/fracture_spread.py (docs/MODELS.md); re-measure it after retraining."""


def card_skeleton(cfg: TrainConfig, params: FractureParams) -> dict[str, Any]:
    """The card fields fixed before training (everything but weights and measured figures)."""
    code = CODE_TABLE["fracture"].code
    return {
        "id": cfg.model_id, "version": cfg.version,
        "name": "InferNode demo fracture detector (phantom-trained)",
        "task": "fracture-detection", "modality": "DX", "body_part": "EXTREMITY",
        "body_parts": list(BODY_PARTS),
        "intended_use": ("Demonstration and integration testing of the InferNode fracture "
                         "pipeline on synthetic CR/DX radiographs of the limbs. Not a medical "
                         "device; not for clinical use."),
        "not_for_clinical_use": True, "license": "Apache-2.0",
        "input": {"channels": 1, "matrix": [params.working_size, params.working_size]},
        "architecture": {"name": "monai.UNet", "params": {
            "spatial_dims": 2, "in_channels": 1, "out_channels": OUT_CHANNELS,
            "channels": list(cfg.channels), "strides": [2] * (len(cfg.channels) - 1),
            "num_res_units": 1}},
        "method": {"name": METHOD, "params": params.model_dump(mode="json")},
        "labels": [{"key": "fracture", "name": "Fracture",
                    "code": {"value": code.value, "scheme": code.scheme, "meaning": code.meaning},
                    "threshold": params.box_threshold}],
        "quality": QUALITY_GATE,
        "uncertainty": UNCERTAINTY,
    }


@dataclass(frozen=True)
class _Sample:
    image: np.ndarray  # (size, size) float16, working grid
    boxes: list[tuple[float, float, float, float]]
    extent: tuple[int, int]
    bright: np.ndarray  # (k, 2) row, col of bone pixels: centres of hard negative crops


def training_images(cfg: TrainConfig, params: FractureParams) -> list[_Sample]:
    """Train-family phantoms on the working grid with their boxes scaled onto it."""
    out = []
    for spec in radiograph_cohort(cfg.n_train, cfg.seed, "train", normal_fraction=0.35):
        ph = make_radiograph(spec)
        w = to_working(ph.image, params.working_size, params.normalise_percentiles)
        sy, sx = w.scale
        boxes = [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in ph.boxes]
        region = w.array[:w.extent[0], :w.extent[1]]
        bright = np.argwhere(region > np.quantile(region, 0.75))[::7]
        out.append(_Sample(w.array.astype(np.float16), boxes, w.extent, bright))
    return out


def _crop(s: _Sample, crop: int, scale: float, rng: np.random.Generator
          ) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A ``crop`` x ``crop`` window around a fracture (70% of the time when there is one),
    else around a bright (bone) pixel, so that negatives are mostly hard ones: joints, growth
    plates, overlaps, casts. ``scale`` zooms (a window of crop / scale pixels resized to
    crop): bones and fractures of other widths than the training family draws."""
    h, w = s.extent
    if s.boxes and rng.random() < 0.7:
        b = s.boxes[int(rng.integers(len(s.boxes)))]
        cx = (b[0] + b[2]) / 2 + rng.uniform(-0.35, 0.35) * crop / scale
        cy = (b[1] + b[3]) / 2 + rng.uniform(-0.35, 0.35) * crop / scale
    else:
        if s.bright.size and rng.random() < 0.8:
            k = int(rng.integers(s.bright.shape[0]))
            cy, cx = float(s.bright[k, 0]), float(s.bright[k, 1])
        else:
            cx, cy = rng.uniform(0, max(w, 1)), rng.uniform(0, max(h, 1))
    size = s.image.shape[0]
    win = int(min(size, round(crop / scale)))
    x0 = int(np.clip(round(cx - win / 2), 0, size - win))
    y0 = int(np.clip(round(cy - win / 2), 0, size - win))
    img = s.image[y0:y0 + win, x0:x0 + win].astype(np.float32)
    zoom = crop / win
    if win != crop:
        t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
        img = F.interpolate(t, size=(crop, crop), mode="bilinear", align_corners=False,
                            antialias=win > crop)[0, 0].numpy()
    boxes = []
    for bx0, by0, bx1, by1 in s.boxes:
        cxb, cyb = (bx0 + bx1) / 2 - x0, (by0 + by1) / 2 - y0
        if 0 <= cxb < win and 0 <= cyb < win:
            boxes.append(((bx0 - x0) * zoom, (by0 - y0) * zoom, (bx1 - x0) * zoom,
                          (by1 - y0) * zoom))
    return img, boxes


def _augment(img: np.ndarray, boxes: list[tuple[float, float, float, float]],
             rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """Flips, transposition, gamma, contrast and noise (boxes follow the geometry)."""
    n = img.shape[0]
    out: list[tuple[float, ...]] = list(boxes)
    if rng.random() < 0.5:
        img = img[:, ::-1]
        out = [(n - b[2], b[1], n - b[0], b[3]) for b in out]
    if rng.random() < 0.5:
        img = img[::-1, :]
        out = [(b[0], n - b[3], b[2], n - b[1]) for b in out]
    if rng.random() < 0.5:
        img = img.T
        out = [(b[1], b[0], b[3], b[2]) for b in out]
    img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.45)
    img = img * rng.uniform(0.8, 1.1) + rng.uniform(-0.05, 0.1)
    if rng.random() < 0.3:
        noise = rng.standard_normal(img.shape).astype(np.float32)
        if rng.random() < 0.5:
            noise = ndimage.gaussian_filter(noise, rng.uniform(0.6, 1.2)) * 2.0
        img = img + rng.uniform(0.0, 0.04) * noise
    return np.ascontiguousarray(img, dtype=np.float32), out


def _batch(samples: list[_Sample], cfg: TrainConfig, rng: np.random.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (n, 1, crop, crop), heatmaps (n, crop, crop), log edge distances
    (n, 4, crop, crop) and box-loss weights (n, crop, crop)."""
    xs, hs, ds, ws = [], [], [], []
    lo, hi = np.log(cfg.scale_range[0]), np.log(cfg.scale_range[1])
    for i in rng.integers(0, len(samples), size=cfg.batch_size):
        scale = float(np.exp(rng.uniform(lo, hi)))
        crop, crop_boxes = _crop(samples[int(i)], cfg.crop, scale, rng)
        img, boxes = _augment(crop, crop_boxes, rng)
        heat, dist, weight = targets([(b[0], b[1], b[2], b[3]) for b in boxes], cfg.crop)
        xs.append(img)
        hs.append(heat)
        ds.append(dist)
        ws.append(weight)
    return (torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(hs)),
            torch.from_numpy(np.stack(ds)), torch.from_numpy(np.stack(ws)))


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) per object."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 0.999
    pos_loss = -(torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4)[~pos].sum()
    return (pos_loss + neg_loss) / max(1, int(pos.sum()))


def giou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Generalised IoU (Rezatofighi et al., 2019) of box pairs (..., 4) as (x0, y0, x1, y1)."""
    ix = (torch.minimum(pred[..., 2], truth[..., 2]) - torch.maximum(pred[..., 0], truth[..., 0])
          ).clamp(min=0)
    iy = (torch.minimum(pred[..., 3], truth[..., 3]) - torch.maximum(pred[..., 1], truth[..., 1])
          ).clamp(min=0)
    inter = ix * iy
    area_p = (pred[..., 2] - pred[..., 0]) * (pred[..., 3] - pred[..., 1])
    area_t = (truth[..., 2] - truth[..., 0]) * (truth[..., 3] - truth[..., 1])
    union = (area_p + area_t - inter).clamp(min=1e-6)
    ex = torch.maximum(pred[..., 2], truth[..., 2]) - torch.minimum(pred[..., 0], truth[..., 0])
    ey = torch.maximum(pred[..., 3], truth[..., 3]) - torch.minimum(pred[..., 1], truth[..., 1])
    hull = (ex * ey).clamp(min=1e-6)
    return inter / union - (hull - union) / hull


def box_loss(y: torch.Tensor, dist: torch.Tensor, weight: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 of the log edge distances, 1 - GIoU of the decoded boxes), both averaged with
    ``weight`` over the pixels around each centre."""
    total = weight.sum().clamp(min=1.0)
    l1 = (F.l1_loss(y[:, EDGES], dist, reduction="none").sum(1) * weight).sum() / total
    sel = weight > 0
    if not bool(sel.any()):
        return l1, y.sum() * 0.0
    pred = torch.exp(y[:, EDGES].clamp(max=8.0)).permute(0, 2, 3, 1)[sel]
    want = torch.exp(dist).permute(0, 2, 3, 1)[sel]
    # pixel centre at the origin: box = (-l, -t, r, b)
    pb = torch.stack([-pred[:, 0], -pred[:, 1], pred[:, 2], pred[:, 3]], 1)
    tb = torch.stack([-want[:, 0], -want[:, 1], want[:, 2], want[:, 3]], 1)
    g = ((1 - giou(pb, tb)) * weight[sel]).sum() / total
    return l1, g


def learning_rate(peak: float, progress: float) -> float:
    """Linear warm-up over the first 5% of training, then cosine decay to zero; ``progress``
    in [0, 1] is the larger of the step and wall-time fractions (a time budget on shared
    CPUs still ends with a fully decayed schedule)."""
    if progress < 0.05:
        return peak * max(progress / 0.05, 0.02)
    return peak * 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95))


@dataclass(frozen=True)
class Decoding:
    """A decoding choice and its train-family validation figures."""

    flip_average: bool
    size_window: int
    threshold: float
    ap50: float
    auc: float
    sensitivity: float
    specificity: float

    @property
    def score(self) -> float:
        """The selection criterion: AP@0.5 plus Youden's J at the chosen threshold (both the
        boxes and the image-level call count)."""
        return self.ap50 + self.sensitivity + self.specificity - 1


def _outputs(net: torch.nn.Module, cases: list[DetectionCase], params: FractureParams,
             flip: bool) -> list[tuple[torch.Tensor, Working]]:
    """Network output and working grid of each validation image (as the pipeline reads)."""
    found = []
    with torch.no_grad():
        for case in cases:
            work = to_working(case.image.array, params.working_size,
                              params.normalise_percentiles)
            x = torch.from_numpy(work.array)[None, None]
            y = net(x)
            if flip:
                y = (y + flip_output(net(x.flip(-1)))) / 2
            found.append((y[0], work))
    return found


def _validation_results(outs: list[tuple[torch.Tensor, Working]], cases: list[DetectionCase],
                        params: FractureParams, window: int) -> list[ImageResult]:
    results = []
    for (y, work), case in zip(outs, cases, strict=True):
        prob, boxes = decode(y, work.extent, params.min_score, params.peak_kernel,
                             params.nms_iou, params.max_detections, window)
        mapped = [(box_to_input(b[:4], work, case.image.shape), b[4]) for b in boxes]
        kept = [(m, sc) for m, sc in mapped if m is not None]
        results.append(ImageResult(case.image.image_id, case.truth,
                                   tuple(m for m, _ in kept), tuple(sc for _, sc in kept),
                                   prob))
    return results


def select_decoding(net: torch.nn.Module, params: FractureParams, cfg: TrainConfig,
                    log: Callable[[str], None]) -> Decoding:
    """Flip averaging and the box window by AP@0.5 + Youden's J (:attr:`Decoding.score`; the
    simplest choice unless another beats it by 0.005) with the image-level operating threshold
    (also the box threshold) at Youden's J, all on a fresh validation set of the TRAIN
    family, so the held-out figures stay untouched by tuning."""
    cases = list(phantom_detection_cases(cfg.n_val, cfg.val_seed, "train"))
    y = np.array([bool(c.truth) for c in cases])
    best: Decoding | None = None
    for flip in (False, True):
        outs = _outputs(net, cases, params, flip)
        for window in (1, 3, 5):
            res = _validation_results(outs, cases, params, window)
            p = np.array([r.probability for r in res])
            t = round(youden_threshold(y, p), 4)
            called = p >= t
            d = Decoding(flip, window, t, average_precision(res, 0.5), roc_auc(y, p),
                         float((called & y).sum() / max(1, y.sum())),
                         float((~called & ~y).sum() / max(1, (~y).sum())))
            log(f"validation (train family, {len(cases)} images): flip {flip}, window "
                f"{window}: AP@0.5 {d.ap50:.3f}, AUC {d.auc:.3f}, threshold {t:.3f}, "
                f"sensitivity {d.sensitivity:.3f}, specificity {d.specificity:.3f}")
            if best is None or d.score > best.score + 0.005:
                best = d
    assert best is not None
    return best


def train_fracture(out: Path, cfg: TrainConfig = TrainConfig(),
                   log: Callable[[str], None] = print) -> ModelCard:
    """Train, measure on the held-out family, and write ``out/weights.pt`` + ``model.yaml``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    params = FractureParams()
    skeleton = card_skeleton(cfg, params)
    arch = skeleton["architecture"]
    net = build_network(arch["name"], arch["params"])
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
             and m.bias is not None]
    with torch.no_grad():  # start the heatmap at a low prior (focal loss, Lin et al. 2017)
        convs[-1].bias[HEAT] = -4.6  # type: ignore[index]
        convs[-1].bias[EDGES] = float(np.log(12.0))  # type: ignore[index]
    if cfg.init_from:
        net.load_state_dict(torch.load(cfg.init_from, map_location="cpu", weights_only=True))
    t0 = time.perf_counter()
    samples = training_images(cfg, params)
    n_boxes = sum(len(s.boxes) for s in samples)
    log(f"{len(samples)} training radiographs, {n_boxes} fractures "
        f"({time.perf_counter() - t0:.1f} s)")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    rng = np.random.default_rng(cfg.seed)
    t1 = time.perf_counter()
    net.train()
    running = 0.0
    steps_done = 0
    for step in range(cfg.steps):
        elapsed = (time.perf_counter() - t1) / 60
        progress = max(step / cfg.steps, elapsed / cfg.fit_minutes if cfg.fit_minutes else 0.0)
        if progress >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg.lr, progress)
        x, heat, dist, weight = _batch(samples, cfg, rng)
        y = net(x)
        l1, g = box_loss(y, dist, weight)
        loss = focal_loss(y[:, HEAT], heat) + cfg.size_weight * l1 + cfg.giou_weight * g
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        steps_done = step + 1
        running += loss.item()
        if (step + 1) % 50 == 0:
            log(f"step {step + 1}/{cfg.steps}: loss {running / 50:.4f} "
                f"({time.perf_counter() - t1:.0f} s)")
            running = 0.0
    fit_s = time.perf_counter() - t1
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / WEIGHTS_FILE)
    skeleton["weights"] = {"format": "state_dict",
                           "files": [{"path": WEIGHTS_FILE, "sha256": sha256_file(
                               out / WEIGHTS_FILE)}]}
    fit = {"source": "inference.phantoms.radiograph synthetic limb radiographs",
           "family": "train", "images": len(samples), "fractures": n_boxes,
           "config": asdict(cfg), "fit_seconds": round(fit_s, 1), "steps_done": steps_done}
    return measure_and_write(out, net, cfg, skeleton, fit, log)


def measure_and_write(out: Path, net: torch.nn.Module, cfg: TrainConfig,
                      skeleton: dict[str, Any], fit: dict[str, Any],
                      log: Callable[[str], None] = print) -> ModelCard:
    """Choose the decoding and threshold on the train-family validation set, measure on the
    held-out family, and write ``out/model.yaml`` (weights already in ``out``). ``fit``: the
    training facts the card keeps under ``training_data``."""
    params = FractureParams.model_validate(skeleton["method"]["params"])
    choice = select_decoding(net, params, cfg, log)
    threshold = choice.threshold
    log(f"chosen: flip {choice.flip_average}, window {choice.size_window}, operating "
        f"threshold {threshold:.3f} (Youden J on {cfg.n_val} train-family images)")
    params = params.model_copy(update={"box_threshold": threshold,
                                       "flip_average": choice.flip_average,
                                       "size_window": choice.size_window})
    skeleton["method"]["params"] = params.model_dump(mode="json")
    skeleton["labels"][0]["threshold"] = threshold
    card = parse_card(skeleton, "fracture training")
    pipe = FracturePipeline(card, net, params, torch.device("cpu"))
    t2 = time.perf_counter()
    report = evaluate_detection(pipe, phantom_detection_cases(cfg.n_test, cfg.test_seed,
                                                              "heldout"),
                                f"held-out radiograph phantom family (seed {cfg.test_seed})",
                                card.id)
    metrics = report.as_dict()
    metrics.update({"seed": cfg.test_seed, "family": "heldout"})
    data = card.model_dump(mode="json", exclude_none=True)
    data["training_data"] = {
        **fit,
        "threshold": {"value": threshold, "method": "Youden J of the image probability",
                      "data": f"{cfg.n_val} train-family images (seed {cfg.val_seed}), "
                              "never the held-out family"},
        "validation": {"family": "train", "images": cfg.n_val, "seed": cfg.val_seed,
                       "criterion": "AP@0.5 + Youden J",
                       "chosen": {"flip_average": choice.flip_average,
                                  "size_window": choice.size_window},
                       "ap50": round(choice.ap50, 4), "image_auc": round(choice.auc, 4),
                       "sensitivity": round(choice.sensitivity, 4),
                       "specificity": round(choice.specificity, 4)},
        "test_seconds": round(time.perf_counter() - t2, 1)}
    data["metrics"] = metrics
    card = parse_card(data, "fracture training")
    write_card(card, out)
    log(f"held-out AP@0.5 {metrics['ap50']['value']}, image AUC "
        f"{metrics['image_auc']['value']}")
    return card
