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

from ..ich.labels import ICH_SUBTYPES
from ..types import Prediction, Volume
from .datasets import LabelledStudy
from .metrics import ClassMetrics, class_metrics
from .segmentation import dice


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
    dice: dict[str, list[float]] = field(default_factory=dict)
    dice_detected: dict[str, list[float]] = field(default_factory=dict)

    def segmentation_dict(self) -> dict[str, Any]:
        """Dice of the predicted subtype masks against the truth, per subtype and over all
        (study, subtype) pairs with that subtype present: ``all`` counts a missed subtype as 0,
        ``detected`` only those the model called positive."""
        def summary(d: dict[str, list[float]]) -> dict[str, Any]:
            pooled = [v for vals in d.values() for v in vals]
            return {"mean": round(float(np.mean(pooled)), 3) if pooled else None,
                    "n": len(pooled),
                    "per_subtype": {k: {"mean": round(float(np.mean(v)), 3), "n": len(v)}
                                    for k, v in d.items() if v}}
        return {"dice_all": summary(self.dice), "dice_detected": summary(self.dice_detected)}

    def as_dict(self) -> dict[str, Any]:
        sal = self.saliency
        extra = {"segmentation": self.segmentation_dict()} if self.dice else {}
        normals = self.per_class.get("any")
        if normals is not None:
            extra["normal_head_specificity"] = {
                "n_normal": normals.n - normals.n_positive,
                "specificity": round(normals.specificity, 3),
                "specificity_ci": [round(v, 3) for v in normals.specificity_ci]}
        return {**extra,
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


def score_masks(pred: Prediction, study: LabelledStudy, all_: dict[str, list[float]],
                detected: dict[str, list[float]]) -> None:
    """Add the Dice of each subtype present in ``study`` (a missed one scores 0 in ``all_``)."""
    got = {m.key: m.mask for m in pred.masks}
    for key in ICH_SUBTYPES:
        truth = study.masks.get(key)
        if truth is None or not study.labels.get(key):
            continue
        d = dice(got[key], truth) if key in got else 0.0
        all_.setdefault(key, []).append(d)
        if key in pred.positive:
            detected.setdefault(key, []).append(d)


def evaluate(model: Classifier, studies: Iterable[LabelledStudy], dataset: str,
             thresholds: dict[str, float], n_boot: int = 1000, seed: int = 0,
             explain: bool = True, segmentation: bool = False) -> EvaluationReport:
    """Predict every study, then compute per-class metrics at ``thresholds`` (and the Dice of
    the masks when ``segmentation``)."""
    labels: dict[str, list[int]] = {k: [] for k in thresholds}
    scores: dict[str, list[float]] = {k: [] for k in thresholds}
    saliency = SaliencyScore()
    dices: dict[str, list[float]] = {}
    detected: dict[str, list[float]] = {}
    n = 0
    for study in studies:
        pred = model.predict(study.volume, explain=explain)
        n += 1
        for key in thresholds:
            labels[key].append(int(study.labels.get(key, 0)))
            scores[key].append(pred.result(key).probability)
        if explain and study.masks:
            score_saliency(pred, study, saliency)
        if segmentation and study.masks:
            score_masks(pred, study, dices, detected)
    per_class = {k: class_metrics(np.array(labels[k]), np.array(scores[k]), t, n_boot, seed)
                 for k, t in thresholds.items()}
    return EvaluationReport(dataset=dataset, n_studies=n, per_class=per_class, labels=labels,
                            scores=scores, saliency=saliency, dice=dices,
                            dice_detected=detected)
