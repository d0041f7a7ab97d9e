"""Train the demo fracture detector on synthetic radiographs and write a model directory.

A 2-D MONAI UNet with a centre-heatmap head (heatmap + log box size, see
:mod:`inference.fracture.decode`) trained on random crops of ``train`` family radiographs,
preprocessed exactly as the pipeline does (long side to the working size, percentile
normalisation). Figures are measured on the ``heldout`` family (other bone widths, cortex,
texture, contrast, noise model, fracture line widths and tilts, image sizes up to 3000 px). A
demo: synthetic data only, its card says ``not_for_clinical_use: true``.
"""

from __future__ import annotations

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
from ..evaluation.detection import evaluate_detection, phantom_detection_cases
from ..evaluation.metrics import youden_threshold
from ..fracture.decode import HEAT, LOG_H, LOG_W, OUT_CHANNELS, targets
from ..fracture.params import FractureParams
from ..fracture.pipeline import METHOD, FracturePipeline
from ..fracture.preprocess import to_working
from ..phantoms.radiograph import BODY_PARTS, make_radiograph, radiograph_cohort

WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Sizes, seeds and optimiser settings; the defaults take about 15 minutes on 2 CPU
    cores."""

    n_train: int = 700
    n_val: int = 60
    n_test: int = 80
    steps: int = 2500
    batch_size: int = 16
    crop: int = 128
    lr: float = 3e-3
    seed: int = 20261204
    val_seed: int = 20261206
    test_seed: int = 20261205
    threads: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    size_weight: float = 1.0
    model_id: str = "fracture-demo"
    version: str = "0.1.0"


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


def _crop(s: _Sample, crop: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A crop around a fracture (70% of the time when there is one), else around a bright
    (bone) pixel, so that negatives are mostly hard ones: joints, growth plates, overlaps."""
    h, w = s.extent
    if s.boxes and rng.random() < 0.7:
        b = s.boxes[int(rng.integers(len(s.boxes)))]
        cx = (b[0] + b[2]) / 2 + rng.uniform(-0.35, 0.35) * crop
        cy = (b[1] + b[3]) / 2 + rng.uniform(-0.35, 0.35) * crop
    else:
        if s.bright.size and rng.random() < 0.8:
            k = int(rng.integers(s.bright.shape[0]))
            cy, cx = float(s.bright[k, 0]), float(s.bright[k, 1])
        else:
            cx, cy = rng.uniform(0, max(w, 1)), rng.uniform(0, max(h, 1))
    size = s.image.shape[0]
    x0 = int(np.clip(round(cx - crop / 2), 0, size - crop))
    y0 = int(np.clip(round(cy - crop / 2), 0, size - crop))
    img = s.image[y0:y0 + crop, x0:x0 + crop].astype(np.float32)
    boxes = []
    for bx0, by0, bx1, by1 in s.boxes:
        cxb, cyb = (bx0 + bx1) / 2 - x0, (by0 + by1) / 2 - y0
        if 0 <= cxb < crop and 0 <= cyb < crop:
            boxes.append((bx0 - x0, by0 - y0, bx1 - x0, by1 - y0))
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
    xs, hs, ss, ws = [], [], [], []
    for i in rng.integers(0, len(samples), size=cfg.batch_size):
        crop, crop_boxes = _crop(samples[int(i)], cfg.crop, rng)
        img, boxes = _augment(crop, crop_boxes, rng)
        heat, logwh, weight = targets([(b[0], b[1], b[2], b[3]) for b in boxes], cfg.crop)
        xs.append(img)
        hs.append(heat)
        ss.append(logwh)
        ws.append(weight)
    return (torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(hs)),
            torch.from_numpy(np.stack(ss)), torch.from_numpy(np.stack(ws)))


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) per object."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 0.999
    pos_loss = -(torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4)[~pos].sum()
    return (pos_loss + neg_loss) / max(1, int(pos.sum()))


def calibrate(pipe: FracturePipeline, cfg: TrainConfig) -> float:
    """The image-level operating threshold (also the box threshold): Youden's J on a fresh
    validation set of the TRAIN family, so the held-out figures stay untouched by tuning."""
    ys, ps = [], []
    for case in phantom_detection_cases(cfg.n_val, cfg.val_seed, "train"):
        pred = pipe.predict_images([case.image])
        ys.append(bool(case.truth))
        ps.append(float(pred.slice_probabilities[0, 0]))
    return round(youden_threshold(np.array(ys), np.array(ps)), 4)


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
    t0 = time.perf_counter()
    samples = training_images(cfg, params)
    n_boxes = sum(len(s.boxes) for s in samples)
    log(f"{len(samples)} training radiographs, {n_boxes} fractures "
        f"({time.perf_counter() - t0:.1f} s)")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    t1 = time.perf_counter()
    net.train()
    running = 0.0
    for step in range(cfg.steps):
        x, heat, logwh, weight = _batch(samples, cfg, rng)
        y = net(x)
        size_l1 = (F.l1_loss(y[:, [LOG_W, LOG_H]], logwh, reduction="none").sum(1) * weight
                   ).sum() / weight.sum().clamp(min=1.0)
        loss = focal_loss(y[:, HEAT], heat) + cfg.size_weight * size_l1
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
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
    device = torch.device("cpu")
    threshold = calibrate(FracturePipeline(parse_card(skeleton, "fracture training"), net,
                                           params, device), cfg)
    log(f"operating threshold {threshold:.3f} (Youden J on {cfg.n_val} train-family images)")
    params = params.model_copy(update={"box_threshold": threshold})
    skeleton["method"]["params"] = params.model_dump(mode="json")
    skeleton["labels"][0]["threshold"] = threshold
    card = parse_card(skeleton, "fracture training")
    pipe = FracturePipeline(card, net, params, device)
    t2 = time.perf_counter()
    report = evaluate_detection(pipe, phantom_detection_cases(cfg.n_test, cfg.test_seed,
                                                              "heldout"),
                                f"held-out radiograph phantom family (seed {cfg.test_seed})",
                                card.id)
    metrics = report.as_dict()
    metrics.update({"seed": cfg.test_seed, "family": "heldout"})
    data = card.model_dump(mode="json", exclude_none=True)
    data["training_data"] = {
        "source": "inference.phantoms.radiograph synthetic limb radiographs",
        "family": "train", "images": len(samples), "fractures": n_boxes,
        "config": asdict(cfg), "fit_seconds": round(fit_s, 1),
        "threshold": {"value": threshold, "method": "Youden J of the image probability",
                      "data": f"{cfg.n_val} train-family images (seed {cfg.val_seed}), "
                              "never the held-out family"},
        "test_seconds": round(time.perf_counter() - t2, 1)}
    data["metrics"] = metrics
    card = parse_card(data, "fracture training")
    write_card(card, out)
    log(f"held-out AP@0.5 {metrics['ap50']['value']}, image AUC "
        f"{metrics['image_auc']['value']}")
    return card
