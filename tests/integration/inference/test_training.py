"""A tiny training run writes a model directory the registry loads and verifies."""

from inference.ich.pipeline import IchPipeline
from inference.registry import ModelRegistry
from inference.training.ich import TrainConfig, train_ich


def test_tiny_training_run_produces_a_verifiable_segmenting_model(tmp_path):
    cfg = TrainConfig(n_train=6, n_calibration=4, n_test=4, n_legacy_test=2, matrix=96,
                      max_slices=12, eval_matrix=96, legacy_shape=(8, 96, 96), epochs=1,
                      batch_size=16, model_id="ich-tiny", seed=5)
    out = tmp_path / "ich-tiny"
    card = train_ich(out, cfg, log=lambda _m: None)
    assert card.not_for_clinical_use and card.metrics["n_studies"] == 4
    assert card.metrics["family"] == "heldout"
    assert card.metrics["family_parameters"]["name"] == "heldout"
    assert card.training_data["train"]["family"] == "train"
    assert "normal_head_specificity" in card.metrics
    assert card.metrics["original_generator"]["n_studies"] == 2
    assert all(0 < lab.threshold < 1 for lab in card.labels)
    # the input gate and the uncertainty check travel with the weights
    assert card.quality is not None and card.quality.min_slices == 8
    assert card.uncertainty is not None and card.uncertainty.classes == ("any",)
    assert card.training_data["config"]["augment"]["enabled"] is True
    reg = ModelRegistry([tmp_path], device="cpu")
    assert reg.ids() == ["ich-tiny"]
    res = reg.verify("ich-tiny")
    assert res.files_checked == 1
    pipe = reg.get("ich-tiny")
    assert isinstance(pipe, IchPipeline) and pipe.segments
