"""Stroke models end to end in the inference package: train (tiny budget), verify, evaluate on
the held-out phantom family and on NIfTI case folders, through the ``infernode models`` CLI."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from inference.evaluation.stroke import nifti_cases, phantom_cases
from inference.registry import ModelRegistry
from inference.stroke import StrokePipeline
from infernode.cli_models import app

runner = CliRunner()


def test_train_stroke_tiny_budget_gives_a_loadable_model(tmp_path):
    out = tmp_path / "stroke-tiny"
    res = runner.invoke(app, ["train", "stroke", "--out", str(out), "--epochs", "1",
                              "--n-train", "2", "--n-test", "2", "--seed", "5"])
    assert res.exit_code == 0, res.output
    card = json.loads(json.dumps(__import__("yaml").safe_load((out / "model.yaml").read_text())))
    assert card["task"] == "stroke-segmentation" and card["method"]["name"] == "network"
    assert card["not_for_clinical_use"] is True
    assert card["metrics"]["n_cases"] == 2 and "dice" in card["metrics"]
    assert (out / "weights.pt").stat().st_size < 5_000_000
    res = runner.invoke(app, ["verify", "--models", str(tmp_path), "--device", "cpu"])
    # an untrained network need not find the smoke lesion, but its weights load strictly
    assert "OK stroke-demo" in res.output or "smoke phantom lesion" in res.output, res.output
    reg = ModelRegistry([out], device="cpu")
    assert isinstance(reg.get("stroke-demo"), StrokePipeline)


def test_evaluate_threshold_method_on_heldout_family(demo_models_dir, tmp_path):
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", "stroke", "--model", "stroke-adc-threshold",
                              "--n", "5", "--seed", "4242", "--json", str(out),
                              "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["n_cases"] == 5 and rep["dataset"].startswith("heldout")
    assert rep["dice"]["mean"] >= 0.8
    assert rep["lesion_f1"]["mean"] >= 0.8
    assert "dice" in res.output and "hd95_mm" in res.output


def _write_case(folder, case):
    """One case as NIfTI: (z, y, x) LPS -> (i, j, k) RAS, the inverse of the reader."""
    folder.mkdir(parents=True)
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1
    aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ case.inp.grid.affine @ perm
    arrays = {"dwi": case.inp.volumes["dwi"].array, "adc": case.inp.volumes["adc"].array,
              "mask": case.truth}
    for name, arr in arrays.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), aff),
                 str(folder / f"{name}.nii.gz"))


def test_nifti_case_folders_give_the_same_figures(demo_models_dir, tmp_path):
    cases = list(phantom_cases(2, 99, "heldout", normal_fraction=0.0))
    for c in cases:
        _write_case(tmp_path / "set" / c.case_id, c)
    back = list(nifti_cases(tmp_path / "set"))
    assert [c.case_id for c in back] == sorted(c.case_id for c in cases)
    for c in back:
        orig = next(o for o in cases if o.case_id == c.case_id)
        assert np.array_equal(c.truth, orig.truth)
        assert np.allclose(c.inp.grid.affine, orig.inp.grid.affine)
    res = runner.invoke(app, ["evaluate", "stroke", "--data", str(tmp_path / "set"),
                              "--json", str(tmp_path / "r.json"),
                              "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n_cases"] == 2 and rep["dice"]["mean"] >= 0.8
    shutil.rmtree(tmp_path / "set" / back[0].case_id)
    (tmp_path / "set" / "broken").mkdir()
    res = runner.invoke(app, ["evaluate", "stroke", "--data", str(tmp_path / "set"),
                              "--models", str(demo_models_dir)])
    assert res.exit_code != 0


@pytest.mark.parametrize("model_id", ["stroke-adc-threshold", "stroke-demo"])
def test_committed_stroke_models_verify(demo_models_dir, model_id):
    res = runner.invoke(app, ["verify", model_id, "--models", str(demo_models_dir),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert f"OK {model_id}" in res.output and "phantom lesion" in res.output
