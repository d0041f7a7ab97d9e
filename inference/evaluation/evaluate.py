"""Run a classification pipeline over a labelled set and report per-class metrics.

Also measures how often the Grad-CAM peak falls inside the ground-truth haemorrhage (when masks
exist), against the chance rate of a peak placed uniformly over soft tissue on the same slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..types import Prediction, Volume
from .datasets import LabelledStudy
from .metrics import ClassMetrics, class_metrics


class Classifier(Protocol):
    def predict(self, volume: Volume, explain: bool = True) -> Prediction: ...


@dataclass
class SaliencyScore:
    """Grad-CAM peaks inside the (dilated) ground truth, and the chance rate."""

    hits: int = 0
    total: int = 0
    chance_sum: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.total if self.total else float("nan")

    @property
    def chance_rate(self) -> float:
        return self.chance_sum / self.total if self.total else float("nan")


@dataclass
class EvaluationReport:
    """Per-class study-level metrics, the raw scores behind them, and the saliency score."""

    dataset: str
    n_studies: int
    per_class: dict[str, ClassMetrics]
    labels: dict[str, list[int]] = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)
    saliency: SaliencyScore = field(default_factory=SaliencyScore)

    def as_dict(self) -> dict[str, Any]:
        sal = self.saliency
        return {
            "dataset": self.dataset,
            "n_studies": self.n_studies,
            "level": "study",
            "per_class": {k: m.as_dict() for k, m in self.per_class.items()},
            "gradcam_peak_in_lesion": {
                "n": sal.total,
                "hit_rate": None if math.isnan(sal.hit_rate) else round(sal.hit_rate, 3),
                "chance_rate": None if math.isnan(sal.chance_rate) else round(sal.chance_rate, 3),
            },
        }


def dilate(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Binary dilation of a 2-D mask with a square of side 2r+1 (max-pool)."""
    if radius_px <= 0:
        return mask.astype(bool)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.max_pool2d(t, 2 * radius_px + 1, stride=1, padding=radius_px)[0, 0].numpy() > 0


def score_saliency(pred: Prediction, study: LabelledStudy, score: SaliencyScore,
                   tolerance_mm: float = 3.0) -> None:
    """Add this study's Grad-CAM maps of truly present classes to ``score``."""
    r = math.ceil(tolerance_mm / study.volume.spacing[1])
    for sal in pred.saliency:
        mask3d = study.masks.get(sal.key)
        if mask3d is None or not study.labels.get(sal.key):
            continue
        target = dilate(mask3d[sal.slice_index], r)
        hu = np.asarray(study.volume.array[sal.slice_index])
        tissue = (hu > -100) & (hu < 200)
        if not tissue.any():
            continue
        score.total += 1
        score.hits += int(target[sal.peak_yx])
        score.chance_sum += float((target & tissue).sum() / tissue.sum())


def evaluate(model: Classifier, studies: Iterable[LabelledStudy], dataset: str,
             thresholds: dict[str, float], n_boot: int = 1000, seed: int = 0,
             explain: bool = True) -> EvaluationReport:
    """Predict every study, then compute per-class metrics at ``thresholds``."""
    labels: dict[str, list[int]] = {k: [] for k in thresholds}
    scores: dict[str, list[float]] = {k: [] for k in thresholds}
    saliency = SaliencyScore()
    n = 0
    for study in studies:
        pred = model.predict(study.volume, explain=explain)
        n += 1
        for key in thresholds:
            labels[key].append(int(study.labels.get(key, 0)))
            scores[key].append(pred.result(key).probability)
        if explain and study.masks:
            score_saliency(pred, study, saliency)
    per_class = {k: class_metrics(np.array(labels[k]), np.array(scores[k]), t, n_boot, seed)
                 for k, t in thresholds.items()}
    return EvaluationReport(dataset=dataset, n_studies=n, per_class=per_class, labels=labels,
                            scores=scores, saliency=saliency)
