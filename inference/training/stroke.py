"""Train the demo stroke network on MR diffusion phantoms and write a model directory.

A 2-D MONAI UNet on normalised DWI + ADC slices (see :class:`NetworkParams`), trained on the
``train`` phantom family and measured on the ``heldout`` family (other tissue and lesion
contrast, noise, bias, resolution and shapes). The result is a demo: synthetic data only, its
card says ``not_for_clinical_use: true``.
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

from ..architectures import build_network
from ..cards import ModelCard, parse_card, sha256_file, write_card
from ..codes import CODE_TABLE
from ..evaluation.stroke import evaluate_segmentation, phantom_cases
from ..phantoms.mr_stroke import stroke_cohort
from ..stroke.channels import stroke_channels
from ..stroke.network import NetworkSegmenter, inplane_size, network_input
from ..stroke.params import NetworkParams
from ..stroke.pipeline import StrokePipeline

WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Sizes, seeds and optimiser settings; the defaults take a few minutes on 2 CPU cores."""

    n_train: int = 40
    n_test: int = 30
    epochs: int = 6
    batch_size: int = 16
    lr: float = 1e-2
    crop: int = 112
    seed: int = 20250301
    test_seed: int = 20250302
    threads: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    model_id: str = "stroke-demo"
    version: str = "0.1.0"


def card_skeleton(cfg: TrainConfig, params: NetworkParams) -> dict[str, Any]:
    """The card fields fixed before training (everything but weights and measured figures)."""
    code = CODE_TABLE["cerebral_infarction"].code
    return {
        "id": cfg.model_id, "version": cfg.version,
        "name": "InferNode demo stroke segmentation network (phantom-trained)",
        "task": "stroke-segmentation", "modality": "MR", "body_part": "BRAIN",
        "intended_use": ("Demonstration and integration testing of the InferNode stroke "
                         "pipeline on synthetic MR diffusion phantoms. Not a medical device."),
        "not_for_clinical_use": True, "license": "Apache-2.0",
        "input": {"channels": 2},
        "architecture": {"name": "monai.UNet", "params": {
            "spatial_dims": 2, "in_channels": 2, "out_channels": 1,
            "channels": list(cfg.channels), "strides": [2] * (len(cfg.channels) - 1),
            "num_res_units": 1}},
        "method": {"name": "network", "params": params.model_dump(mode="json")},
        "labels": [{"key": "infarct", "name": "Acute infarct",
                    "code": {"value": code.value, "scheme": code.scheme, "meaning": code.meaning},
                    "threshold": 0.5}],
    }


def _fit(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop / zero pad the last two axes to ``size``."""
    out = torch.zeros((*x.shape[:-2], size, size), dtype=x.dtype)
    h, w = x.shape[-2:]
    sy, sx = max(0, (h - size) // 2), max(0, (w - size) // 2)
    dy, dx = max(0, (size - h) // 2), max(0, (size - w) // 2)
    hh, ww = min(h, size), min(w, size)
    out[..., dy:dy + hh, dx:dx + ww] = x[..., sy:sy + hh, sx:sx + ww]
    return out


def training_slices(cfg: TrainConfig, params: NetworkParams
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, crop, crop) inputs and (n, 1, crop, crop) targets from the ``train`` family:
    every slice with brain, lesion slices twice."""
    xs, ys = [], []
    for ph in stroke_cohort(cfg.n_train, cfg.seed, "train", normal_fraction=0.15):
        ch = stroke_channels(ph.study_input())
        x = torch.from_numpy(network_input(ch, params)).permute(1, 0, 2, 3)
        y = torch.from_numpy(ph.truth.astype(np.float32))[:, None]
        sp = ch.grid.spacing
        size = inplane_size((int(x.shape[-2]), int(x.shape[-1])), (sp[1], sp[2]),
                            params.pixel_mm)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        y = (F.interpolate(y, size=size, mode="bilinear", align_corners=False) >= 0.5).float()
        keep: np.ndarray = np.asarray(ch.brain.reshape(ch.brain.shape[0], -1).any(axis=1))
        lesion = y.flatten(1).amax(dim=1) > 0
        idx = [k for k in range(x.shape[0]) if keep[k]] + [
            k for k in range(x.shape[0]) if keep[k] and bool(lesion[k])]
        xs.append(_fit(x[idx], cfg.crop))
        ys.append(_fit(y[idx], cfg.crop))
    return torch.cat(xs), torch.cat(ys)


def _prior_bias(net: torch.nn.Module, prior: float) -> None:
    """Start the output at the lesion prior (Lin et al., focal loss, ICCV 2017): with lesions
    under 1% of pixels a zero bias spends most of a short training unlearning false positives."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
             and m.bias is not None]
    if convs and convs[-1].bias is not None:
        torch.nn.init.constant_(convs[-1].bias, float(np.log(prior / (1 - prior))))


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice (over the batch) + binary cross-entropy."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    soft_dice = 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)
    return soft_dice + F.binary_cross_entropy_with_logits(logits, target)


def train_stroke(out: Path, cfg: TrainConfig = TrainConfig(),
                 log: Callable[[str], None] = print) -> ModelCard:
    """Train, measure on the held-out family, and write ``out/weights.pt`` + ``model.yaml``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    params = NetworkParams()
    skeleton = card_skeleton(cfg, params)
    arch = skeleton["architecture"]
    net = build_network(arch["name"], arch["params"])
    _prior_bias(net, 0.02)
    t0 = time.perf_counter()
    x, y = training_slices(cfg, params)
    log(f"{x.shape[0]} training slices from {cfg.n_train} phantoms "
        f"({time.perf_counter() - t0:.1f} s)")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * max(1, x.shape[0] // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    t1 = time.perf_counter()
    net.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for i in range(max(1, x.shape[0] // cfg.batch_size)):
            b = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb, yb = x[b].clone(), y[b]
            xb[:, 0] *= torch.empty(len(b), 1, 1).uniform_(0.85, 1.15, generator=gen)
            if torch.rand(1, generator=gen).item() < 0.5:
                xb, yb = xb.flip(-1), yb.flip(-1)
            loss = _loss(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        n_batches = max(1, x.shape[0] // cfg.batch_size)
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / n_batches:.4f}")
    fit_s = time.perf_counter() - t1
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / WEIGHTS_FILE)
    digest = sha256_file(out / WEIGHTS_FILE)
    skeleton["weights"] = {"format": "state_dict",
                           "files": [{"path": WEIGHTS_FILE, "sha256": digest}]}
    card = parse_card(skeleton, "stroke training")
    device = torch.device("cpu")
    pipe = StrokePipeline(card, NetworkSegmenter(net, params, device), device)
    t2 = time.perf_counter()
    report = evaluate_segmentation(pipe, phantom_cases(cfg.n_test, cfg.test_seed, "heldout"),
                                   "held-out phantom family", card.id)
    metrics = report.as_dict()
    metrics.update({"seed": cfg.test_seed, "family": "heldout"})
    data = card.model_dump(mode="json", exclude_none=True)
    data["training_data"] = {
        "source": "inference.phantoms.mr_stroke MR diffusion phantoms (synthetic)",
        "family": "train", "studies": cfg.n_train, "slices": int(x.shape[0]),
        "config": asdict(cfg), "fit_seconds": round(fit_s, 1),
        "test_seconds": round(time.perf_counter() - t2, 1)}
    data["metrics"] = metrics
    card = parse_card(data, "stroke training")
    write_card(card, out)
    log(f"held-out Dice {metrics['dice']['mean']}, lesion F1 {metrics['lesion_f1']['mean']}")
    return card
