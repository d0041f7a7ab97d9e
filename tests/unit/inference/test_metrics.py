import math

import numpy as np
import pytest

from inference.evaluation.metrics import (
    class_metrics,
    confusion,
    f1_score,
    roc_auc,
    wilson_interval,
    youden_threshold,
)


def test_auc_hand_computed():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 1+0+1+1 = 3 of 4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_auc_ties_count_half_and_extremes():
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9])) == 1.0
    assert roc_auc(np.array([1, 1, 0]), np.array([0.1, 0.2, 0.9])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_wilson_interval_published_value():
    # 8/10: Wilson 95% interval 0.490 - 0.943 (Newcombe 1998, Table I style)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3)
    assert hi == pytest.approx(0.9433, abs=1e-3)
    lo0, hi0 = wilson_interval(0, 10)
    assert lo0 == 0.0 and hi0 == pytest.approx(0.2775, abs=1e-3)


def test_confusion_sensitivity_specificity_f1():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.05])
    assert confusion(y, s >= 0.5) == (2, 1, 3, 1)
    m = class_metrics(y, s, 0.5, n_boot=200, seed=1)
    assert m.sensitivity == pytest.approx(2 / 3)
    assert m.specificity == pytest.approx(3 / 4)
    assert m.accuracy == pytest.approx(5 / 7)
    assert m.f1 == pytest.approx(f1_score(2, 1, 1)) == pytest.approx(4 / 6)
    # AUC by hand: positive 0.9 beats 4, 0.6 beats 3 (0.7 higher), 0.2 beats 2 -> 9/12
    assert m.auc == pytest.approx(0.75)
    assert m.auc_ci[0] <= m.auc <= m.auc_ci[1]
    assert m.sensitivity_ci == wilson_interval(2, 3)


def test_bootstrap_is_reproducible_with_seed():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = y * 0.3 + rng.random(60)
    a = class_metrics(y, s, 0.6, n_boot=300, seed=5)
    b = class_metrics(y, s, 0.6, n_boot=300, seed=5)
    assert a.auc_ci == b.auc_ci and a.f1_ci == b.f1_ci
    assert a.auc_ci[1] - a.auc_ci[0] > 0.05


def test_youden_threshold_separates_clean_data():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    t = youden_threshold(y, s)
    assert 0.3 < t < 0.7
    assert confusion(y, s >= t) == (2, 0, 3, 0)


def test_as_dict_rounds_and_maps_nan_to_none():
    m = class_metrics(np.array([0, 0]), np.array([0.1, 0.9]), 0.5, n_boot=0)
    d = m.as_dict()
    assert d["auc"] is None and d["sensitivity"] is None
    assert d["specificity"] == 0.5
