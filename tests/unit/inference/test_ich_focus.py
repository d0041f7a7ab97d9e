"""The ICH trainer's focus class (e.g. subarachnoid): a share of each batch's sampling mass on
its slabs and a positive weight on its slab and mask losses; without it the sampling and the
losses are those of before the option."""

from __future__ import annotations

import pytest
import torch

from inference.ich.labels import ICH_CLASSES, ICH_SUBTYPES
from inference.training.ich import TrainConfig, _pos_weights, _sampling_weights

SAH = ICH_CLASSES.index("subarachnoid")


def _labels() -> torch.Tensor:
    """100 slabs: 60 normal, 30 subdural, 10 subarachnoid (with 'any')."""
    y = torch.zeros((100, len(ICH_CLASSES)))
    y[60:, 0] = 1
    y[60:90, ICH_CLASSES.index("subdural")] = 1
    y[90:, SAH] = 1
    return y


def _share(w: torch.Tensor, rows: slice) -> float:
    return float(w[rows].sum() / w.sum())


def test_no_focus_keeps_the_sampling_of_before() -> None:
    y = _labels()
    plain = _sampling_weights(y)
    assert torch.equal(plain, _sampling_weights(y, None, 0.3))
    assert torch.equal(plain, _sampling_weights(y, SAH, 0.0))
    # at least half the mass on slabs with blood (rarer subtypes boosted), as before
    assert _share(plain, slice(60, 100)) >= 0.5
    assert _pos_weights(TrainConfig()) == (None, None)


def test_the_focus_class_gets_its_share_on_top_of_the_rest() -> None:
    y = _labels()
    plain, focused = _sampling_weights(y), _sampling_weights(y, SAH, 0.2)
    before = _share(plain, slice(90, 100))
    # a fifth of the mass moved evenly onto the subarachnoid slabs, the rest scaled by 0.8
    assert _share(focused, slice(90, 100)) == pytest.approx(0.2 + 0.8 * before)
    assert focused[90:].std() == pytest.approx(0.0, abs=1e-9)
    ratio = focused[:90] / plain[:90]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))
    # no slab of the focus class in the set: unchanged
    assert torch.equal(_sampling_weights(y[:90], SAH, 0.2), _sampling_weights(y[:90]))


def test_the_positive_weight_lands_on_the_focus_class_only() -> None:
    slab, mask = _pos_weights(TrainConfig(focus_class="subarachnoid", focus_pos_weight=2.0))
    assert slab is not None and mask is not None
    assert slab.tolist() == [2.0 if k == "subarachnoid" else 1.0 for k in ICH_CLASSES]
    assert mask.shape == (len(ICH_SUBTYPES), 1, 1)
    assert mask.flatten().tolist() == [2.0 if k == "subarachnoid" else 1.0
                                       for k in ICH_SUBTYPES]


@pytest.mark.parametrize("fields", [{"focus_class": "any"}, {"focus_class": "sah"},
                                    {"focus_share": 1.0}, {"focus_pos_weight": 0.0}])
def test_invalid_focus_settings_are_refused(fields: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**fields)
