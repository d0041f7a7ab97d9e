"""Segmentation metrics with bootstrap 95% confidence intervals over cases.

Dice and IoU (Jaccard) of the union masks; lesion-wise F1 as in ISLES'22 (a truth lesion is
detected when any predicted component overlaps it; a predicted component that overlaps no truth
lesion is a false positive); absolute volume difference (mL); 95th-percentile Hausdorff distance
(mm, symmetric: the larger of the two directed 95th percentiles of surface distances, as in
MONAI's ``compute_hausdorff_distance(percentile=95)``). Conventions for empty masks: Dice and
IoU are 1 when both are empty and 0 when only one is; HD95 is NaN unless both are non-empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    return p, t


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P∩T| / (|P| + |T|); 1 when both are empty."""
    p, t = _pair(pred, truth)
    d = int(p.sum()) + int(t.sum())
    return 1.0 if d == 0 else 2.0 * int((p & t).sum()) / d


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P∩T| / |P∪T|; 1 when both are empty."""
    p, t = _pair(pred, truth)
    u = int((p | t).sum())
    return 1.0 if u == 0 else int((p & t).sum()) / u


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)


@dataclass(frozen=True)
class LesionCounts:
    """Lesion-wise detection counts of one case."""

    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        """2TP / (2TP + FP + FN); 1 when there is no lesion and no prediction."""
        d = 2 * self.tp + self.fp + self.fn
        return 1.0 if d == 0 else 2 * self.tp / d


def lesion_counts(pred: np.ndarray, truth: np.ndarray, connectivity: int = 26) -> LesionCounts:
    """Truth lesions overlapped by a prediction (TP) or not (FN); predicted components that
    overlap no truth lesion (FP)."""
    p, t = _pair(pred, truth)
    s = _structure(connectivity)
    tl, nt = ndimage.label(t, structure=s)
    pl, npred = ndimage.label(p, structure=s)
    hit_truth = np.unique(tl[p & t])
    hit_pred = np.unique(pl[p & t])
    tp = int((hit_truth > 0).sum())
    return LesionCounts(tp=tp, fp=npred - int((hit_pred > 0).sum()), fn=nt - tp)


def _surface(mask: np.ndarray) -> np.ndarray:
    out: np.ndarray = mask & ~ndimage.binary_erosion(mask, structure=_structure(6))
    return out


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between the surfaces; NaN when either
    mask is empty."""
    p, t = _pair(pred, truth)
    if not p.any() or not t.any():
        return float("nan")
    sp, st = _surface(p), _surface(t)
    to_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(to_t[sp], 95), np.percentile(to_p[st], 95)))


@dataclass(frozen=True)
class CaseScores:
    """All metrics of one case; volumes in mL."""

    case_id: str
    dice: float
    iou: float
    lesions: LesionCounts
    truth_ml: float
    pred_ml: float
    hd95_mm: float

    @property
    def abs_volume_diff_ml(self) -> float:
        return abs(self.pred_ml - self.truth_ml)


def score_case(case_id: str, pred: np.ndarray, truth: np.ndarray,
               spacing: Sequence[float], connectivity: int = 26) -> CaseScores:
    """Every metric of one case on a grid of ``spacing`` (z, y, x) mm."""
    p, t = _pair(pred, truth)
    vox_ml = float(np.prod(spacing)) / 1000.0
    return CaseScores(case_id=case_id, dice=dice(p, t), iou=iou(p, t),
                      lesions=lesion_counts(p, t, connectivity),
                      truth_ml=int(t.sum()) * vox_ml, pred_ml=int(p.sum()) * vox_ml,
                      hd95_mm=hd95(p, t, spacing))


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0
                      ) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean over cases (NaNs dropped); (nan, nan) with fewer
    than 2 values or ``n_boot`` 0."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size < 2 or n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def mean_with_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0
                 ) -> dict[str, object]:
    """{"mean", "ci", "n"} with NaNs dropped (rounded for reports)."""
    v = [x for x in values if not math.isnan(x)]
    lo, hi = bootstrap_mean_ci(v, n_boot, seed)
    mean = float(np.mean(v)) if v else float("nan")

    def r(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 4)

    return {"mean": r(mean), "ci": [r(lo), r(hi)], "n": len(v)}
