"""The registry dispatches by the card's task through one table; weight-less cards are legal."""

import shutil
from pathlib import Path

import pytest
import yaml

from inference.cards import parse_card, write_card
from inference.errors import ModelCardError
from inference.ich.pipeline import IchPipeline
from inference.registry import TASKS, GenericPipeline, ModelRegistry, TaskHandler
from inference.stroke import StrokePipeline
from inference.stroke.threshold import ThresholdSegmenter
from inference.types import StudyInput

from .stroke_support import threshold_card

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_task_table_covers_every_card_task():
    from typing import get_args

    from inference.cards import Task

    assert set(TASKS) == set(get_args(Task))


def test_weightless_threshold_card_loads_as_stroke_pipeline():
    reg = ModelRegistry([MODELS / "stroke-adc-threshold"], device="cpu")
    pipe = reg.get("stroke-adc-threshold")
    assert isinstance(pipe, StrokePipeline) and isinstance(pipe.segmenter, ThresholdSegmenter)
    assert pipe.segmenter.params.adc_threshold == 620.0
    res = reg.verify("stroke-adc-threshold")
    assert res.files_checked == 0 and "phantom lesion" in res.detail


def test_weights_digest_of_a_weightless_card_follows_its_parameters():
    a, b = threshold_card(), threshold_card(adc_threshold=600.0)
    assert len(a.weights_sha256) == 64 and a.weights_sha256 != b.weights_sha256
    assert a.weights_sha256 == threshold_card().weights_sha256


def test_weightless_card_needs_a_method_and_format_none_takes_no_files():
    data = threshold_card().model_dump(mode="json", exclude_none=True)
    data.pop("method")
    with pytest.raises(ModelCardError, match="method"):
        parse_card(data)
    data = threshold_card().model_dump(mode="json", exclude_none=True)
    data["weights"] = {"format": "none", "files": [{"path": "w.pt", "sha256": "0" * 64}]}
    with pytest.raises(ModelCardError, match="no files"):
        parse_card(data)
    data["weights"] = {"format": "state_dict"}
    with pytest.raises(ModelCardError, match="at least one file"):
        parse_card(data)


def test_unknown_stroke_method_and_bad_params_are_card_errors(tmp_path):
    for method, match in (({"name": "magic"}, "unknown stroke method"),
                          ({"name": "adc-threshold", "params": {"adc_treshold": 1}},
                           "adc_treshold")):
        d = tmp_path / method["name"]
        d.mkdir()
        card = threshold_card().model_copy(update={"method": None})
        data = card.model_dump(mode="json", exclude_none=True)
        data["method"] = method
        (d / "model.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        with pytest.raises(ModelCardError, match=match):
            ModelRegistry([d], device="cpu").get(card.id)


def test_registry_takes_its_own_task_table(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    write_card(threshold_card(), d)
    calls = []

    def load(card, directory, device):
        calls.append(card.task)
        return TASKS["stroke-segmentation"].load(card, directory, device)

    table = {"stroke-segmentation": TaskHandler(load, TASKS["stroke-segmentation"].smoke)}
    reg = ModelRegistry([d], device="cpu", warmup=False, tasks=table)
    assert isinstance(reg.get("stroke-test"), StrokePipeline) and calls == [
        "stroke-segmentation"]
    with pytest.raises(ModelCardError, match="no pipeline for task"):
        ModelRegistry([d], device="cpu", tasks={}).get("stroke-test")


def test_ich_demo_still_loads_and_takes_a_study_input(tmp_path):
    shutil.copytree(MODELS / "ich-demo", tmp_path / "ich-demo")
    reg = ModelRegistry([tmp_path], device="cpu", warmup=False)
    pipe = reg.get("ich-demo")
    assert isinstance(pipe, IchPipeline)
    from inference.phantoms import PhantomSpec, make_head_ct

    vol = make_head_ct(PhantomSpec(shape=(8, 96, 96), pixel_mm=2.4, seed=1)).volume
    a = pipe.predict_input(StudyInput.single("ct", vol), explain=False)
    b = pipe.predict(vol, explain=False)
    assert a.study_probabilities == b.study_probabilities


def test_generic_pipeline_has_no_study_prediction():
    with pytest.raises(ModelCardError, match="no study pipeline"):
        import torch

        pipe = GenericPipeline(threshold_card(), torch.nn.Identity(), torch.device("cpu"))
        pipe.predict_input(StudyInput.single("x", _tiny()))


def _tiny():
    import numpy as np

    from inference.types import Volume

    return Volume.from_array(np.zeros((1, 2, 2), np.float32), (1.0, 1.0, 1.0))
