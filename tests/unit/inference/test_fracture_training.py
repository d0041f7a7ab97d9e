"""The detector's training losses and crops: GIoU by hand, zero box loss at the truth,
zoomed crops keep their boxes on the drawn content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.fracture.decode import EDGES, OUT_CHANNELS, targets
from inference.training.fracture import _crop, _Sample, box_loss, giou, learning_rate


def test_giou_by_hand() -> None:
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert float(giou(a, a)) == pytest.approx(1.0)
    # half overlap: IoU 2 / 6, hull 2 x 3 = union: GIoU = IoU
    assert float(giou(a, torch.tensor([1.0, 0.0, 3.0, 2.0]))) == pytest.approx(1 / 3)
    # apart: IoU 0, hull 4 x 2 = 8, union 8 -> 0; further apart the hull grows: negative
    assert float(giou(a, torch.tensor([2.0, 0.0, 4.0, 2.0]))) == pytest.approx(0.0)
    assert float(giou(a, torch.tensor([4.0, 0.0, 6.0, 2.0]))) == pytest.approx(-1 / 3)


def test_box_loss_is_zero_at_the_truth_and_grows_with_a_wrong_size() -> None:
    heat, dist, weight = targets([(20.0, 30.0, 44.0, 42.0)], 64)
    y = torch.zeros((1, OUT_CHANNELS, 64, 64))
    y[0, EDGES] = torch.from_numpy(dist)
    d, w = torch.from_numpy(dist)[None], torch.from_numpy(weight)[None]
    l1, g = box_loss(y, d, w)
    assert float(l1) == pytest.approx(0.0, abs=1e-6) and float(g) == pytest.approx(0.0, abs=1e-5)
    y[0, EDGES] += 0.3  # every box 35% too large
    l1, g = box_loss(y, d, w)
    assert float(l1) == pytest.approx(1.2, rel=1e-4) and float(g) > 0.2


@pytest.mark.parametrize("scale", [0.8, 1.0, 1.25])
def test_zoomed_crop_keeps_its_box_on_the_drawn_block(scale: float) -> None:
    img = np.zeros((384, 384), dtype=np.float16)
    img[150:170, 200:240] = 1.0
    box = (200.0, 150.0, 240.0, 170.0)
    sample = _Sample(img, [box], (384, 384), np.zeros((0, 2), dtype=np.int64))
    crop, boxes = _crop(sample, 128, scale, np.random.default_rng(3))
    assert crop.shape == (128, 128) and len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert (x1 - x0, y1 - y0) == pytest.approx((40 * scale, 20 * scale), rel=0.02)
    inner = crop[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2]
    assert inner.size and inner.min() > 0.9
    assert crop.sum() == pytest.approx(40 * 20 * scale ** 2, rel=0.1)


def test_schedule_warms_up_then_decays_to_zero() -> None:
    assert learning_rate(1.0, 0.0) == pytest.approx(0.02)
    assert learning_rate(1.0, 0.025) == pytest.approx(0.5)
    assert learning_rate(1.0, 0.05) == pytest.approx(1.0)
    assert learning_rate(1.0, 0.525) == pytest.approx(0.5)
    assert learning_rate(1.0, 1.0) == pytest.approx(0.0, abs=1e-12)
