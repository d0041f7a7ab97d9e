"""The ICH trainer's slab thickness option: it sets the card's ``input.slice_spacing_mm``, which
the pipeline's preprocessing reads, so thin slices go into thinner slabs; the default is the
5 mm of the shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from inference.cards import InputSpec
from inference.ich.preprocess import slab_size, to_slabs
from inference.training.ich import TrainConfig, card_skeleton


def test_default_slab_is_that_of_the_shipped_model() -> None:
    assert TrainConfig().slab_mm == 5.0
    assert card_skeleton(TrainConfig())["input"]["slice_spacing_mm"] == 5.0


def test_the_option_reaches_the_card_input() -> None:
    assert card_skeleton(TrainConfig(slab_mm=2.5))["input"]["slice_spacing_mm"] == 2.5


@pytest.mark.parametrize("bad", [0.0, 0.2, 12.0])
def test_out_of_range_slabs_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="slab_mm"):
        TrainConfig(slab_mm=bad)


def test_thinner_slabs_halve_the_averaging_of_thin_slices() -> None:
    assert slab_size(0.625, 5.0) == 8
    assert slab_size(0.625, 2.5) == 4
    # slices at least three quarters of the slab are read one per slab either way
    assert slab_size(2.0, 2.5) == 1
    assert slab_size(5.0, 2.5) == 1


def test_a_small_bright_spot_keeps_more_of_its_contrast_in_thinner_slabs() -> None:
    vol = np.zeros((16, 64, 64), dtype=np.float32)
    vol[8:12, 30:34, 30:34] = 100.0  # 4 slices of 0.625 mm = 2.5 mm of "blood"
    thick, *_ = to_slabs(vol, (0.625, 1.0, 1.0), InputSpec(matrix=(64, 64),
                                                           slice_spacing_mm=5.0))
    thin, *_ = to_slabs(vol, (0.625, 1.0, 1.0), InputSpec(matrix=(64, 64), slice_spacing_mm=2.5))
    assert thick.shape[0] == 2 and thin.shape[0] == 4
    assert float(thick.max()) == pytest.approx(50.0)
    assert float(thin.max()) == pytest.approx(100.0)
