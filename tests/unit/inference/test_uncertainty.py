"""The mirror-image uncertainty check (inference.uncertainty): which spreads fail, and that the
mirrored study is the study flipped left-right and nothing else."""

from __future__ import annotations

import numpy as np

from inference.cards import UncertaintySpec
from inference.types import (
    ClassResult,
    Code,
    ModelInfo,
    Prediction,
    SegmentMask,
    StudyInput,
    Volume,
)
from inference.uncertainty import mirrored, spread

_CODE = Code("1386000", "SCT", "Intracranial hemorrhage")
_MODEL = ModelInfo("m", "1", "m", "0" * 64, "InferNode project", True)


def _prediction(probs: dict[str, float], volumes: dict[str, float] | None = None) -> Prediction:
    classes = tuple(ClassResult(k, k, _CODE, p, 0.5, p >= 0.5, None) for k, p in probs.items())
    masks = tuple(SegmentMask(k, k, _CODE, np.zeros((1, 1, 1), np.uint8), v, 0)
                  for k, v in (volumes or {}).items())
    return Prediction("ich", _MODEL, classes, np.zeros((0, len(classes))), (), masks=masks)


def test_a_stable_prediction_passes_with_its_spread_measured() -> None:
    spec = UncertaintySpec(max_probability_spread=0.2, max_volume_spread=0.2)
    report = spread(_prediction({"any": 0.91, "sdh": 0.8}, {"sdh": 10.0}),
                    _prediction({"any": 0.88, "sdh": 0.7}, {"sdh": 9.0}), spec)
    assert report.passed, report.reasons
    assert report.measures == {"probability_spread": 0.1, "decisions_changed": 0,
                               "volume_spread": 0.1}


def test_a_decision_that_flips_fails_even_with_a_small_spread() -> None:
    report = spread(_prediction({"any": 0.52}), _prediction({"any": 0.47}), UncertaintySpec())
    assert not report.passed
    assert report.reasons == ("the call on any changes when the image is mirrored",)


def test_a_large_probability_spread_fails_and_names_the_class() -> None:
    spec = UncertaintySpec(max_probability_spread=0.2)
    report = spread(_prediction({"any": 0.95, "edh": 0.9}),
                    _prediction({"any": 0.93, "edh": 0.6}), spec)
    assert report.reasons == ("the edh probability changes by 0.30 when the image is mirrored "
                              "(at most 0.2)",)


def test_only_the_card_s_classes_count() -> None:
    spec = UncertaintySpec(classes=("any",), max_probability_spread=0.2)
    # a subtype that changes its name under the flip does not make the study call uncertain
    report = spread(_prediction({"any": 0.95, "edh": 0.9, "sdh": 0.1}),
                    _prediction({"any": 0.94, "edh": 0.2, "sdh": 0.8}), spec)
    assert report.passed, report.reasons


def test_the_total_segmented_volume_is_compared_with_a_floor() -> None:
    spec = UncertaintySpec(max_volume_spread=0.15, volume_floor_ml=1.0)
    unstable = spread(_prediction({}, {"infarct": 10.0}), _prediction({}, {"infarct": 7.0}), spec)
    assert unstable.reasons == ("the segmented volume changes by 30% when the image is "
                                "mirrored (at most 15%)",)
    # 0.1 mL against 0.2 mL: double, but tiny in mL; the 1 mL floor keeps it stable
    tiny = spread(_prediction({}, {"infarct": 0.1}), _prediction({}, {"infarct": 0.2}), spec)
    assert tiny.passed and tiny.measures["volume_spread"] == 0.1
    # a mask only in one of the two counts in full
    gone = spread(_prediction({}, {"edh": 5.0}), _prediction({}, {}), spec)
    assert gone.measures["volume_spread"] == 1.0 and not gone.passed


def test_mirrored_flips_every_channel_left_right_and_keeps_the_geometry() -> None:
    rng = np.random.default_rng(1)
    affine = np.diag([5.0, 0.9, 0.9, 1.0])
    affine[:3, 3] = (-40.0, -100.0, -110.0)
    vols = {name: Volume(rng.normal(size=(3, 4, 5)).astype(np.float32), (5.0, 0.9, 0.9),
                         affine, ("a", "b", "c")) for name in ("dwi", "adc")}
    out = mirrored(StudyInput(vols))
    for name, v in vols.items():
        np.testing.assert_array_equal(out.volumes[name].array, v.array[:, :, ::-1])
        np.testing.assert_array_equal(out.volumes[name].affine, v.affine)
        assert out.volumes[name].spacing == v.spacing
        assert out.volumes[name].slice_ids == v.slice_ids
