"""How faithful the Grad-CAM maps are: the share of maps whose peak falls inside the lesion.

For every held-out study with a ground-truth mask, each map the model delivers for a class the
study truly has (the positive classes' maps, on their key slices) is scored: a hit when its
peak lies inside that class's lesion on that slice, strictly and within a tolerance of a few
millimetres (the map is upsampled from a coarse layer, so its peak can sit on the lesion's
rim). The chance rate is what a peak placed uniformly over the slice's soft tissue would
score. Maps of classes the study does not have (false positives) are counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evaluation.datasets import LabelledStudy
from ..evaluation.evaluate import Classifier, dilate
from ..evaluation.metrics import wilson_interval


@dataclass
class _Tally:
    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.total += 1
        self.hits += int(hit)

    def as_dict(self) -> dict[str, Any]:
        rate = self.hits / self.total if self.total else None
        low, high = wilson_interval(self.hits, self.total) if self.total else (math.nan,) * 2
        return {"n": self.total, "hits": self.hits,
                "rate": None if rate is None else round(rate, 3),
                "ci95": None if rate is None else [round(low, 3), round(high, 3)]}


@dataclass
class Faithfulness:
    """Peak-in-lesion counts of the Grad-CAM maps of a labelled set."""

    tolerance_mm: float
    strict: _Tally = field(default_factory=_Tally)
    tolerant: _Tally = field(default_factory=_Tally)
    per_class: dict[str, _Tally] = field(default_factory=dict)
    chance_sum: float = 0.0
    false_positive_maps: int = 0
    studies: int = 0

    @property
    def hit_rate(self) -> float:
        """Share of maps whose peak lies within `tolerance_mm` of the lesion (nan: none)."""
        t = self.tolerant
        return t.hits / t.total if t.total else math.nan

    def as_dict(self) -> dict[str, Any]:
        chance = self.chance_sum / self.tolerant.total if self.tolerant.total else None
        return {
            "metric": "share of Grad-CAM maps whose peak falls inside the lesion",
            "tolerance_mm": self.tolerance_mm,
            "peak_in_lesion": self.tolerant.as_dict(),
            "peak_in_lesion_strict": self.strict.as_dict(),
            "chance_rate": None if chance is None else round(chance, 3),
            "per_class": {k: v.as_dict() for k, v in sorted(self.per_class.items())},
            "false_positive_maps": self.false_positive_maps,
            "studies": self.studies,
        }


def score_study(model: Classifier, study: LabelledStudy, into: Faithfulness) -> None:
    """Predict one study with its maps and add them to `into`."""
    prediction = model.predict(study.volume, explain=True)
    into.studies += 1
    radius = math.ceil(into.tolerance_mm / study.volume.spacing[1])
    for saliency in prediction.saliency:
        if not study.labels.get(saliency.key):
            into.false_positive_maps += 1
            continue
        # a class without a mask of its own (the study-level "any"): every lesion
        mask = study.masks.get(saliency.key)
        if mask is None:
            mask = np.logical_or.reduce([m.astype(bool) for m in study.masks.values()])
        lesion = mask[saliency.slice_index].astype(bool)
        near = dilate(lesion, radius)
        hu = np.asarray(study.volume.array[saliency.slice_index])
        tissue = (hu > -100) & (hu < 200)
        into.strict.add(bool(lesion[saliency.peak_yx]))
        hit = bool(near[saliency.peak_yx])
        into.tolerant.add(hit)
        into.per_class.setdefault(saliency.key, _Tally()).add(hit)
        if tissue.any():
            into.chance_sum += float((near & tissue).sum() / tissue.sum())


def gradcam_faithfulness(model: Classifier, studies: Iterable[LabelledStudy],
                         tolerance_mm: float = 3.0) -> Faithfulness:
    """Peak-in-lesion figures of the model's Grad-CAM maps over `studies` (those with masks)."""
    out = Faithfulness(tolerance_mm=tolerance_mm)
    for study in studies:
        if study.masks:
            score_study(model, study, out)
    return out
