"""Detection metrics against hand-computed cases; NMS, decoding and box mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.evaluation.detection import (
    ImageResult,
    average_precision,
    box_iou,
    coco_ap,
    detection_report,
    froc,
)
from inference.fracture.decode import (
    EDGES,
    OUT_CHANNELS,
    decode,
    flip_output,
    nms,
    targets,
)
from inference.fracture.preprocess import box_to_input, to_working

A = (10.0, 10.0, 30.0, 30.0)
B = (100.0, 50.0, 140.0, 90.0)


def test_box_iou_by_hand() -> None:
    assert box_iou(A, A) == 1.0
    assert box_iou(A, (20.0, 10.0, 40.0, 30.0)) == pytest.approx(200 / 600)
    assert box_iou(A, B) == 0.0


def test_perfect_detector_scores_one() -> None:
    images = [ImageResult("a", (A,), (A,), (0.9,), 0.9),
              ImageResult("b", (B,), (B,), (0.8,), 0.8),
              ImageResult("c", (), (), (), 0.1)]
    assert average_precision(images, 0.5) == 1.0
    assert coco_ap(images) == 1.0
    assert froc(images) == {0.5: 1.0, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0}


def test_two_box_case_by_hand() -> None:
    """Scores 0.9 (hit), 0.8 (false positive), 0.7 (hit); two truth boxes.
    Recall 0.5, 0.5, 1; precision 1, 0.5, 2/3; envelope 1, 2/3, 2/3. Of the 101 recall
    points, 0..0.5 (51 points) get 1 and 0.51..1 (50 points) get 2/3."""
    images = [ImageResult("a", (A,), (A,), (0.9,), 0.9),
              ImageResult("b", (B,), ((0.0, 0.0, 5.0, 5.0), B), (0.8, 0.7), 0.8)]
    assert average_precision(images, 0.5) == pytest.approx((51 + 50 * 2 / 3) / 101)
    # FROC over 2 images: (fp/img, sens) after each score: (0, .5), (.5, .5), (.5, 1).
    assert froc(images, rates=(0.25, 0.5, 1.0)) == {0.25: 0.5, 0.5: 1.0, 1.0: 1.0}


def test_loose_box_counts_at_low_iou_only() -> None:
    loose = (10.0, 10.0, 40.0, 30.0)  # IoU 2/3 with A
    images = [ImageResult("a", (A,), (loose,), (0.9,), 0.9)]
    assert average_precision(images, 0.5) == 1.0
    assert average_precision(images, 0.7) == 0.0
    assert coco_ap(images) == pytest.approx(0.4)  # thresholds 0.50 .. 0.65 of ten


def test_one_detection_matches_one_truth_box() -> None:
    images = [ImageResult("a", (A,), (A, A), (0.9, 0.8), 0.9)]
    # second copy is a false positive: precision 1 then 0.5, recall 1 from the first
    assert average_precision(images, 0.5) == 1.0
    assert froc(images, rates=(0.5, 1.0)) == {0.5: 1.0, 1.0: 1.0}
    missed = [ImageResult("a", (A,), (B,), (0.9,), 0.9)]
    assert average_precision(missed, 0.5) == 0.0


def test_report_image_level_figures() -> None:
    images = [ImageResult(str(i), (A,) if i < 4 else (), (A,), (0.2 * i,), p)
              for i, p in enumerate([0.9, 0.8, 0.7, 0.2, 0.1, 0.6, 0.3, 0.05])]
    rep = detection_report(images, threshold=0.5, n_boot=200)
    assert rep.counts == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert rep.sensitivity.value == 0.75 and rep.specificity.value == 0.75
    # AUC: positives 0.9, 0.8, 0.7, 0.2 against negatives 0.1, 0.6, 0.3, 0.05: 4+4+4+2 = 14 of 16
    assert rep.image_auc.value == pytest.approx(14 / 16)
    lo, hi = rep.image_auc.ci
    assert lo <= 14 / 16 <= hi
    d = rep.as_dict()
    assert {"ap50", "ap50_95", "froc", "image_auc", "sensitivity", "specificity"} <= set(d)
    assert "sensitivity_at_0.5_fp_per_image" in d["froc"]


def test_no_truth_gives_nan_ap() -> None:
    assert math.isnan(average_precision([ImageResult("a", (), (A,), (0.5,), 0.5)]))


def test_nms_drops_overlaps_keeps_the_best() -> None:
    boxes = np.array([A, (11.0, 11.0, 31.0, 31.0), B])
    assert nms(boxes, np.array([0.5, 0.9, 0.4]), 0.3) == [1, 2]
    assert nms(boxes, np.array([0.5, 0.9, 0.4]), 0.95) == [1, 0, 2]


def _output(heat: np.ndarray, dist: np.ndarray) -> torch.Tensor:
    """A network output that reproduces training targets exactly."""
    out = torch.zeros((OUT_CHANNELS, *heat.shape))
    out[0] = torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 1e-4))
    out[EDGES] = torch.from_numpy(dist)
    return out


def test_targets_decode_back_to_the_boxes() -> None:
    boxes = [(20.0, 30.0, 44.0, 42.0), (80.0, 70.0, 90.0, 110.0)]
    heat, dist, weight = targets(boxes, 128)
    assert weight.max() > 0 and (weight > 0).sum() < (heat > 0.3).sum() + 1
    out = _output(heat, dist)
    for window in (1, 3, 5):
        prob, found = decode(out, (128, 128), 0.5, 3, 0.3, 10, size_window=window)
        assert prob == pytest.approx(1.0, abs=1e-3)
        assert len(found) == 2
        for f in found:  # every pixel near a centre predicts its box's edges exactly
            assert max(box_iou(f[:4], b) for b in boxes) > 0.98


def test_a_peak_off_the_centre_still_gives_the_box() -> None:
    """Edge distances: the box predicted at a pixel beside the centre is the same box."""
    box = (20.0, 30.0, 44.0, 42.0)
    heat, dist, _w = targets([box], 64)
    heat[36, 32], heat[36, 33] = 0.7, 1.0  # the peak one pixel right of the centre
    prob, found = decode(_output(heat, dist), (64, 64), 0.5, 3, 0.3, 5)
    assert len(found) == 1 and found[0][:4] == pytest.approx(box, abs=1e-3)


def test_box_is_the_heat_weighted_mean_around_the_peak() -> None:
    """Box (10, 10, 30, 20) predicted at the peak, a box 4 px further right one pixel away
    where the heat is half: a 3 x 3 window gives the weighted mean of the edges; window 1 the
    peak's own box."""
    out = torch.full((OUT_CHANNELS, 32, 32), -20.0)
    out[0, 16, 16], out[0, 16, 17] = 20.0, 0.0  # probabilities ~1 and 0.5
    c = 16.5
    out[EDGES, 16, 16] = torch.log(torch.tensor([c - 10, c - 10, 30 - c, 20 - c]))
    c2 = 17.5  # the neighbour's pixel centre (x); same row
    out[EDGES, 16, 17] = torch.log(torch.tensor([c2 - 14, c - 10, 34 - c2, 20 - c]))
    _p, peak_only = decode(out, (32, 32), 0.5, 3, 0.3, 5, size_window=1)
    assert peak_only[0][:4] == pytest.approx((10.0, 10.0, 30.0, 20.0), abs=1e-4)
    _p, smoothed = decode(out, (32, 32), 0.9, 3, 0.3, 5, size_window=3)
    shift = 4 * 0.5 / 1.5
    assert smoothed[0][:4] == pytest.approx((10 + shift, 10.0, 30 + shift, 20.0), abs=1e-3)


def test_mirrored_output_maps_back_onto_the_image() -> None:
    """The output for a left-right mirrored image, passed through flip_output, decodes to the
    original image's box (left and right distances swap)."""
    box = (20.0, 30.0, 44.0, 42.0)
    mirrored = (64 - box[2], box[1], 64 - box[0], box[3])
    heat, dist, _w = targets([mirrored], 64)
    back = flip_output(_output(heat, dist)[None])[0]
    _p, found = decode(back, (64, 64), 0.5, 3, 0.3, 5)
    assert len(found) == 1 and box_iou(found[0][:4], box) > 0.98


def test_working_grid_boxes_map_back_exactly() -> None:
    """A 3000 x 2500 image on a 384 grid: the working box of a known input box maps back to it."""
    img = np.zeros((3000, 2500), dtype=np.float32)
    img[1000:1200, 700:1000] = 1000.0
    work = to_working(img, 384, (0.5, 99.8))
    assert work.extent == (384, 320)
    sy, sx = work.scale
    truth = (700.0, 1000.0, 1000.0, 1200.0)
    working_box = (truth[0] * sx, truth[1] * sy, truth[2] * sx, truth[3] * sy)
    assert box_to_input(working_box, work, img.shape) == pytest.approx(truth)
    # the bright block sits where the scale says on the working grid
    rows = np.flatnonzero(work.array.max(axis=1) > 0.5)
    assert rows[0] == pytest.approx(1000 * sy, abs=1) and rows[-1] == pytest.approx(1200 * sy,
                                                                                   abs=1)
    # boxes leaving the image are clipped inside it
    assert box_to_input((-5.0, -5.0, 400.0, 400.0), work, img.shape) == (0.0, 0.0, 2500.0,
                                                                       3000.0)
    assert work.array[:, 320:].max() == 0.0  # padding right of the image
