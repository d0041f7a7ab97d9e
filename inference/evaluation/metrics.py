"""Binary classification metrics with 95% confidence intervals.

Proportions (sensitivity, specificity, accuracy) get Wilson score intervals (Wilson 1927;
Newcombe, Stat Med 1998); AUC and F1, which are not simple proportions, get percentile bootstrap
intervals over studies with a fixed seed so that reports are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count half
    (Mann-Whitney U / (n_pos * n_neg)). NaN when either class is absent."""
    y, s = _check(y_true, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < s.size:  # average ranks over ties
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn)."""
    y, p = _check(y_true, y_pred)
    p = p.astype(bool)
    return (int((y & p).sum()), int((~y & p).sum()), int((~y & ~p).sum()), int((y & ~p).sum()))


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) when n == 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def f1_score(tp: int, fp: int, fn: int) -> float:
    """F1 = 2TP / (2TP + FP + FN); NaN when there are no positives and no positive calls."""
    d = 2 * tp + fp + fn
    return 2 * tp / d if d else float("nan")


def _ratio(k: int, n: int) -> float:
    return k / n if n else float("nan")


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (lowest on ties).

    Candidates are midpoints between consecutive distinct scores, so the threshold generalises
    a little better than a score that happens to be in the set.
    """
    y, s = _check(y_true, scores)
    if y.all() or (~y).all():
        return 0.5
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    best_t, best_j = 0.5, -2.0
    for t in cands:
        tp, fp, tn, fn = confusion(y, s >= t)
        j = tp / (tp + fn) + tn / (tn + fp) - 1
        if j > best_j + 1e-12:
            best_t, best_j = float(t), j
    return float(min(max(best_t, 1e-4), 1 - 1e-4))


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class at one threshold, each with a 95% CI (lo, hi)."""

    n: int
    n_positive: int
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    auc: float
    auc_ci: tuple[float, float]
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]
    accuracy: float
    accuracy_ci: tuple[float, float]
    f1: float
    f1_ci: tuple[float, float]

    def as_dict(self, digits: int = 3) -> dict[str, object]:
        """Rounded plain values (NaN -> None) for YAML/JSON reports."""

        def r(v: object) -> object:
            if isinstance(v, float):
                return None if math.isnan(v) else round(v, digits)
            if isinstance(v, tuple):
                return [r(x) for x in v]
            return v

        return {k: r(v) for k, v in asdict(self).items()}


def _bootstrap(y: np.ndarray, s: np.ndarray, threshold: float, n_boot: int,
               seed: int) -> tuple[tuple[float, float], tuple[float, float]]:
    rng = np.random.default_rng(seed)
    aucs, f1s = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, size=y.size)
        yb, sb = y[idx], s[idx]
        a = roc_auc(yb, sb)
        if not math.isnan(a):
            aucs.append(a)
        tp, fp, _tn, fn = confusion(yb, sb >= threshold)
        f = f1_score(tp, fp, fn)
        if not math.isnan(f):
            f1s.append(f)

    def pct(v: list[float]) -> tuple[float, float]:
        if len(v) < 10:
            return (float("nan"), float("nan"))
        return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))

    return pct(aucs), pct(f1s)


def class_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float,
                  n_boot: int = 1000, seed: int = 0) -> ClassMetrics:
    """All metrics for one class; ``n_boot=0`` skips the bootstrap (CIs for AUC/F1 NaN)."""
    y, s = _check(y_true, scores)
    tp, fp, tn, fn = confusion(y, s >= threshold)
    nan2 = (float("nan"), float("nan"))
    auc_ci, f1_ci = _bootstrap(y, s, threshold, n_boot, seed) if n_boot else (nan2, nan2)
    return ClassMetrics(
        n=int(y.size), n_positive=int(y.sum()), threshold=float(threshold),
        tp=tp, fp=fp, tn=tn, fn=fn,
        auc=roc_auc(y, s), auc_ci=auc_ci,
        sensitivity=_ratio(tp, tp + fn), sensitivity_ci=wilson_interval(tp, tp + fn),
        specificity=_ratio(tn, tn + fp), specificity_ci=wilson_interval(tn, tn + fp),
        accuracy=_ratio(tp + tn, y.size), accuracy_ci=wilson_interval(tp + tn, y.size),
        f1=f1_score(tp, fp, fn), f1_ci=f1_ci,
    )
