"""inference.explain.faithfulness: peak-in-lesion counting of Grad-CAM maps."""

from __future__ import annotations

import numpy as np

from inference.evaluation.datasets import LabelledStudy
from inference.explain.faithfulness import gradcam_faithfulness
from inference.types import ModelInfo, Prediction, SaliencyMap, Volume

_INFO = ModelInfo("m", "1", "m", "0" * 64, "x", True)


class _Maps:
    """A stand-in classifier whose maps peak where the test says (the counting is under
    test here, not a network)."""

    def __init__(self, peaks: dict[str, list[tuple[str, int, tuple[int, int]]]]) -> None:
        self.peaks = peaks

    def predict(self, volume: Volume, explain: bool = True) -> Prediction:
        study = volume.slice_ids[0]
        maps = []
        for key, z, (y, x) in self.peaks[study]:
            heat = np.zeros(volume.array.shape[1:], np.float32)
            heat[y, x] = 1.0
            maps.append(SaliencyMap(key, z, str(z), heat, (y, x), b""))
        return Prediction("ich", _INFO, (), np.zeros((0, 0)), (), saliency=tuple(maps))


def _study(name: str, labels: dict[str, int], masks: dict[str, np.ndarray]) -> LabelledStudy:
    hu = np.full((4, 40, 40), 30.0)
    ids = tuple(f"{name}" if i == 0 else f"{name}-{i}" for i in range(4))
    return LabelledStudy(name, Volume.from_array(hu, (5.0, 1.0, 1.0), ids), labels, None,
                         masks)


def test_hits_misses_tolerance_and_false_positive_maps() -> None:
    sdh = np.zeros((4, 40, 40), np.uint8)
    sdh[2, 10:20, 10:20] = 1
    a = _study("a", {"any": 1, "subdural": 1, "epidural": 0}, {"subdural": sdh})
    model = _Maps({"a": [
        ("subdural", 2, (15, 15)),  # inside
        ("subdural", 2, (21, 15)),  # 2 px outside: a hit within 3 mm only
        ("subdural", 2, (35, 35)),  # far off
        ("any", 2, (12, 12)),  # "any" has no mask of its own: every lesion counts
        ("epidural", 2, (15, 15)),  # a class the study does not have
    ]})
    result = gradcam_faithfulness(model, [a], tolerance_mm=3.0)
    d = result.as_dict()
    assert d["peak_in_lesion"]["n"] == 4 and d["peak_in_lesion"]["hits"] == 3
    assert d["peak_in_lesion_strict"]["hits"] == 2
    assert d["false_positive_maps"] == 1
    assert d["per_class"]["subdural"] == {"n": 3, "hits": 2, "rate": 0.667,
                                          "ci95": d["per_class"]["subdural"]["ci95"]}
    low, high = d["peak_in_lesion"]["ci95"]
    assert low < 0.75 < high
    assert 0 < d["chance_rate"] < 0.3  # the dilated lesion is a small part of the slice


def test_studies_without_masks_are_not_scored() -> None:
    b = _study("b", {"any": 0}, {})
    result = gradcam_faithfulness(_Maps({"b": []}), [b])
    assert result.as_dict()["peak_in_lesion"] == {"n": 0, "hits": 0, "rate": None,
                                                   "ci95": None}
    assert result.studies == 0
