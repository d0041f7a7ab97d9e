"""Segmentation metrics against values computed by hand."""

import math

import numpy as np
import pytest

from inference.evaluation.segmentation import (
    bootstrap_mean_ci,
    dice,
    hd95,
    iou,
    lesion_counts,
    mean_with_ci,
    score_case,
)
from inference.evaluation.stroke import lesion_volume_errors


def _grid(shape=(1, 1, 10)):
    return np.zeros(shape, dtype=np.uint8)


def test_dice_and_iou_by_hand():
    t, p = _grid(), _grid()
    t[0, 0, 0:4] = 1  # 4 voxels
    p[0, 0, 2:8] = 1  # 6 voxels, 2 shared
    assert dice(p, t) == pytest.approx(2 * 2 / (4 + 6))
    assert iou(p, t) == pytest.approx(2 / 8)
    assert dice(_grid(), _grid()) == 1.0 and iou(_grid(), _grid()) == 1.0
    assert dice(p, _grid()) == 0.0
    with pytest.raises(ValueError, match="shape"):
        dice(p, _grid((1, 1, 9)))


def test_lesion_wise_counts_and_f1():
    t = np.zeros((1, 5, 20), np.uint8)
    p = np.zeros_like(t)
    t[0, 2, 0:3] = 1    # lesion A: detected
    t[0, 2, 8:10] = 1   # lesion B: missed
    t[0, 2, 14:16] = 1  # lesion C: detected by two components
    p[0, 2, 2:5] = 1    # overlaps A
    p[0, 0, 14] = 1     # does not touch C at 26-connectivity? row 0 vs row 2: no
    p[0, 2, 15] = 1     # overlaps C
    p[0, 4, 18] = 1     # overlaps nothing
    c = lesion_counts(p, t)
    assert (c.tp, c.fp, c.fn) == (2, 2, 1)
    assert c.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    empty = lesion_counts(np.zeros_like(t), np.zeros_like(t))
    assert (empty.tp, empty.fp, empty.fn, empty.f1) == (0, 0, 0, 1.0)


def test_connectivity_changes_what_counts_as_one_lesion():
    t = np.zeros((1, 3, 3), np.uint8)
    t[0, 0, 0] = t[0, 1, 1] = 1  # diagonal neighbours
    assert lesion_counts(t, t, connectivity=26).tp == 1
    assert lesion_counts(t, t, connectivity=6).tp == 2


def test_hd95_uses_spacing():
    t = np.zeros((1, 1, 20), np.uint8)
    p = np.zeros_like(t)
    t[0, 0, 5] = 1
    p[0, 0, 8] = 1
    assert hd95(p, t, (1.0, 1.0, 2.0)) == pytest.approx(6.0)  # 3 voxels x 2 mm
    assert math.isnan(hd95(p, np.zeros_like(t), (1.0, 1.0, 1.0)))
    cube = np.zeros((9, 9, 9), np.uint8)
    cube[2:7, 2:7, 2:7] = 1
    assert hd95(cube, cube, (1.0, 1.0, 1.0)) == 0.0


def test_case_scores_volume_difference():
    t, p = _grid((2, 10, 10)), _grid((2, 10, 10))
    t[:, :5, :4] = 1  # 40 voxels
    p[:, :5, :6] = 1  # 60 voxels
    s = score_case("c", p, t, (2.0, 1.0, 1.0))  # 2 mm^3 voxels
    assert s.truth_ml == pytest.approx(0.080) and s.pred_ml == pytest.approx(0.120)
    assert s.abs_volume_diff_ml == pytest.approx(0.040)
    assert s.dice == pytest.approx(80 / 100)


def test_lesion_volume_errors_only_for_lesions_of_a_minimum_size():
    t = np.zeros((10, 10, 40), np.uint8)
    p = np.zeros_like(t)
    t[:, :, 0:10] = 1   # 1000 voxels = 1 mL at 1 mm^3
    p[:, :, 0:11] = 1   # +10%
    t[0, 0, 30] = 1     # tiny lesion: ignored
    errs = lesion_volume_errors(p, t, (1.0, 1.0, 1.0), min_ml=1.0)
    assert errs == [pytest.approx(0.10)]


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    vals = [0.7, 0.8, 0.9, 0.85, 0.75, float("nan")]
    lo, hi = bootstrap_mean_ci(vals, n_boot=500, seed=1)
    assert lo < np.nanmean(vals) < hi and 0.7 <= lo and hi <= 0.9
    assert (lo, hi) == bootstrap_mean_ci(vals, n_boot=500, seed=1)
    assert all(math.isnan(x) for x in bootstrap_mean_ci([0.5]))
    m = mean_with_ci(vals, n_boot=200)
    assert m["n"] == 5 and m["mean"] == pytest.approx(0.8)
