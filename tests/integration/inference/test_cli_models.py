"""``infernode models`` sub-commands against the committed demo model and a tampered copy."""

import json
import shutil

from typer.testing import CliRunner

from infernode.cli_models import app

runner = CliRunner()


def test_list_and_show(demo_models_dir):
    res = runner.invoke(app, ["list", "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    assert "ich-demo" in res.output and "NO" in res.output
    res = runner.invoke(app, ["show", "ich-demo", "--models", str(demo_models_dir)])
    assert res.exit_code == 0 and "not_for_clinical_use: true" in res.output
    res = runner.invoke(app, ["show", "nope", "--models", str(demo_models_dir)])
    assert res.exit_code == 1 and "no model with id 'nope'" in res.output


def test_list_reads_the_settings_file_and_the_environment(demo_models_dir, tmp_path):
    """Without --models the registry is the one the node's settings describe: the file given
    with --config, else INFERNODE_INFERENCE__MODEL_PATHS, never a fixed default."""
    only = tmp_path / "only"
    only.mkdir()
    shutil.copytree(demo_models_dir / "stroke-demo", only / "stroke-demo")
    settings = tmp_path / "infernode.yaml"
    settings.write_text(f"inference:\n  model_paths: [{json.dumps(str(only))}]\n")
    res = runner.invoke(app, ["list", "--config", str(settings)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "stroke-demo" in res.output and "ich-demo" not in res.output
    res = runner.invoke(app, ["show", "ich-demo", "--config", str(settings)])
    assert res.exit_code == 1 and "no model with id 'ich-demo'" in res.output
    res = runner.invoke(app, ["list"], env={"COLUMNS": "200",
                                            "INFERNODE_INFERENCE__MODEL_PATHS": json.dumps(
                                                [str(only)])})
    assert res.exit_code == 0, res.output
    assert "stroke-demo" in res.output and "ich-demo" not in res.output


def test_verify_ok_then_tampered_fails(demo_models_dir, tmp_path):
    res = runner.invoke(app, ["verify", "ich-demo", "--models", str(demo_models_dir),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "OK ich-demo" in res.output and "study probabilities" in res.output
    copy = tmp_path / "ich-demo"
    shutil.copytree(demo_models_dir / "ich-demo", copy)
    with (copy / "weights.pt").open("r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    res = runner.invoke(app, ["verify", "--models", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 1
    assert "FAIL ich-demo" in res.output and "sha256 mismatch" in res.output


def test_evaluate_on_the_heldout_family_writes_report(demo_models_dir, tmp_path):
    """The held-out phantom family through the CLI on a tiny budget: per-class metrics, Dice
    of the masks and specificity on its normal heads."""
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", "ich-demo", "--data", "phantoms", "--family",
                              "heldout", "--n", "6", "--seed", "31337", "--json", str(out),
                              "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["n_studies"] == 6 and "heldout family" in rep["dataset"]
    assert set(rep["per_class"]) == {"any", "epidural", "subdural", "subarachnoid",
                                     "intraparenchymal", "intraventricular"}
    normals = rep["normal_head_specificity"]
    assert normals["n_normal"] == 6 - rep["per_class"]["any"]["n_positive"]
    seg = rep["segmentation"]["dice_all"]
    assert seg["n"] >= 1 and 0.0 <= seg["mean"] <= 1.0
    assert "sens" in res.output and "normal heads" in res.output and "dice_all" in res.output


def test_evaluate_original_generator_and_unknown_family(demo_models_dir, tmp_path):
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", "ich-demo", "--family", "original", "--n", "2",
                              "--seed", "31338", "--json", str(out),
                              "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["n_studies"] == 2
    res = runner.invoke(app, ["evaluate", "ich-demo", "--family", "nope", "--n", "1",
                              "--models", str(demo_models_dir)])
    assert res.exit_code == 2 and "unknown phantom family" in res.output


def test_evaluate_rsna_layout_with_dicom_reader(demo_models_dir, tmp_path):
    """Two phantom studies written as DICOM under RSNA names and labels, read back through the
    CLI's pydicom slice reader (HU, study grouping, order along the normal)."""
    import csv
    import hashlib

    from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series
    from inference.ich.labels import ICH_CLASSES
    from inference.phantoms import PhantomSpec, make_head_ct

    images = tmp_path / "stage_2_train"
    images.mkdir()
    rows = []
    for n, subtypes in enumerate([("subdural",), ()]):
        ph = make_head_ct(PhantomSpec(shape=(28, 256, 256), subtypes=subtypes, seed=600 + n))
        datasets = volume_series(ph.volume.array, ph.volume.spacing,
                                 identity=StudyIdentity(patient_id=f"P{n}"), spec=SeriesSpec())
        for k, ds in enumerate(datasets):
            image = "ID_" + hashlib.sha1(f"{n}-{k}".encode()).hexdigest()[:9]
            ds.save_as(images / f"{image}.dcm", enforce_file_format=True)
            for i, cls in enumerate(ICH_CLASSES):
                rows.append({"ID": f"{image}_{cls}", "Label": int(ph.slice_labels[k, i])})
    with (tmp_path / "stage_2_train.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["ID", "Label"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "rsna.json"
    res = runner.invoke(app, ["evaluate", "ich-demo", "--layout", "rsna", "--data", str(tmp_path),
                              "--json", str(out), "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    anyc = rep["per_class"]["any"]
    assert rep["n_studies"] == 2 and anyc["n_positive"] == 1
    assert (anyc["tp"], anyc["tn"]) == (1, 1)
    assert rep["per_class"]["subdural"]["tp"] == 1
