"""The mirror-image check on radiographs (inference.uncertainty with ``per_image``): the spread
is the largest change of an image's own probability, not only of the study's maximum, and the
mirrored radiographs are the images flipped left-right and nothing else."""

from __future__ import annotations

import numpy as np

from inference.cards import UncertaintySpec
from inference.types import ClassResult, Code, ModelInfo, Prediction, Radiograph
from inference.uncertainty import mirrored_images, spread

_CODE = Code("72704001", "SCT", "Fracture")
_MODEL = ModelInfo("m", "1", "m", "0" * 64, "InferNode project", True)
_IDS = ("1.2.3.1", "1.2.3.2")


def _prediction(per_image: list[float], ids: tuple[str, ...] = _IDS) -> Prediction:
    p = max(per_image)
    result = ClassResult("fracture", "Fracture", _CODE, p, 0.5, p >= 0.5, None)
    return Prediction("fracture", _MODEL, (result,),
                      np.asarray(per_image, np.float32)[:, None], ids)


def _spec(**kw: object) -> UncertaintySpec:
    return UncertaintySpec.model_validate({"classes": ["fracture"], "max_probability_spread": 0.17,
                                           "per_image": True, "decisions_must_agree": False,
                                           **kw})


def test_a_change_on_one_image_fails_though_the_study_maximum_holds() -> None:
    report = spread(_prediction([0.9, 0.3]), _prediction([0.9, 0.55]), _spec())
    assert report.measures == {"probability_spread": 0.0, "image_probability_spread": 0.25}
    assert report.reasons == ("the fracture probability of an image changes by 0.25 when the "
                              "image is mirrored (at most 0.17)",)


def test_small_changes_pass() -> None:
    report = spread(_prediction([0.9, 0.3]), _prediction([0.85, 0.4]), _spec())
    assert report.passed, report.reasons
    assert report.measures["image_probability_spread"] == 0.1


def test_without_per_image_only_the_study_probability_counts() -> None:
    report = spread(_prediction([0.9, 0.3]), _prediction([0.9, 0.55]), _spec(per_image=False))
    assert report.passed and "image_probability_spread" not in report.measures


def test_predictions_on_other_images_are_not_compared_image_by_image() -> None:
    report = spread(_prediction([0.9, 0.3]), _prediction([0.9, 0.8], ("9.9", "9.8")), _spec())
    assert report.passed and "image_probability_spread" not in report.measures


def test_mirrored_images_flip_columns_and_keep_the_rest() -> None:
    array = np.arange(8 * 10, dtype=np.float32).reshape(8, 10)
    original = Radiograph(array=array, image_id="1.2.3", pixel_spacing_mm=(0.1, 0.2),
                          body_part="WRIST", laterality="left", view="PA")
    [flipped] = mirrored_images([original])
    assert np.array_equal(flipped.array, array[:, ::-1])
    assert flipped.array.flags.c_contiguous
    assert (flipped.image_id, flipped.pixel_spacing_mm, flipped.body_part, flipped.laterality,
            flipped.view) == ("1.2.3", (0.1, 0.2), "WRIST", "left", "PA")
    assert np.array_equal(original.array, array)  # the input is left as it was
