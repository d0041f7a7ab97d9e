"""evaluate() and the Grad-CAM hit score on hand-made predictions (no network)."""

import numpy as np
import pytest

from inference.evaluation.datasets import LabelledStudy
from inference.evaluation.evaluate import SaliencyScore, dilate, evaluate, score_saliency
from inference.types import ClassResult, Code, ModelInfo, Prediction, SaliencyMap, Volume

INFO = ModelInfo("m", "1", "M", "0" * 64, "test", True)
CODE = Code("1", "SCT", "x")


def _pred(p_any, peak=None, slice_index=1):
    res = ClassResult(key="any", name="Any", code=CODE, probability=p_any, threshold=0.5,
                      positive=p_any >= 0.5, key_slice=None)
    sal = ()
    if peak is not None:
        sal = (SaliencyMap(key="any", slice_index=slice_index, slice_id=str(slice_index),
                           heatmap=np.zeros((10, 10), np.float32), peak_yx=peak, png=b""),)
    return Prediction(pipeline="ich", model=INFO, classes=(res,),
                      slice_probabilities=np.zeros((3, 1), np.float32),
                      slice_ids=("0", "1", "2"), saliency=sal)


def _study(label, with_mask=True):
    arr = np.full((3, 10, 10), 30.0, np.float32)
    arr[:, 0, :] = -1000.0  # one row of air: tissue = 90 px per slice
    masks = {}
    if with_mask:
        m = np.zeros((3, 10, 10), np.uint8)
        m[1, 5, 5] = 1
        masks["any"] = m
    return LabelledStudy("s", Volume.from_array(arr, (5.0, 1.0, 1.0)), {"any": label},
                         masks=masks)


def test_dilate_square():
    m = np.zeros((5, 5), np.uint8)
    m[2, 2] = 1
    assert dilate(m, 1).sum() == 9 and dilate(m, 0).sum() == 1


def test_saliency_hit_and_chance():
    score = SaliencyScore()
    score_saliency(_pred(0.9, peak=(5, 6)), _study(1), score, tolerance_mm=1.0)
    score_saliency(_pred(0.9, peak=(9, 9)), _study(1), score, tolerance_mm=1.0)
    assert (score.hits, score.total) == (1, 2)
    # dilated mask 3x3 = 9 px of 90 tissue px
    assert score.chance_rate == pytest.approx(0.1)
    # a map for an absent class is not scored
    score_saliency(_pred(0.9, peak=(5, 5)), _study(0), score, tolerance_mm=1.0)
    assert score.total == 2


class _Fixed:
    def __init__(self, probs):
        self.probs = iter(probs)

    def predict(self, volume, explain=True):
        return _pred(next(self.probs))


def test_evaluate_collects_scores_and_metrics():
    studies = [_study(1, False), _study(0, False), _study(1, False), _study(0, False)]
    rep = evaluate(_Fixed([0.9, 0.2, 0.4, 0.1]), studies, "toy", {"any": 0.5}, n_boot=0)
    m = rep.per_class["any"]
    assert (m.tp, m.fp, m.tn, m.fn) == (1, 0, 2, 1)
    assert m.auc == 1.0
    assert rep.scores["any"] == [0.9, 0.2, 0.4, 0.1] and rep.labels["any"] == [1, 0, 1, 0]
    assert rep.as_dict()["per_class"]["any"]["sensitivity"] == 0.5
