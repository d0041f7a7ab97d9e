"""``infernode models train|evaluate fracture`` on tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from inference.phantoms.radiograph import RadiographSpec, make_radiograph
from inference.registry import ModelRegistry
from infernode.cli_models import app

runner = CliRunner()
KEYS = {"ap50", "ap50_95", "froc", "image_auc", "sensitivity", "specificity", "n_images"}


def test_evaluate_on_heldout_phantoms_writes_json(demo_models_dir: Path, tmp_path: Path
                                                  ) -> None:
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", "fracture", "--family", "heldout", "-n", "4",
                              "--seed", "31337", "--json", str(out),
                              "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert KEYS <= set(rep) and rep["n_images"] == 4 and rep["model"] == "fracture-demo"
    assert set(rep["froc"]) == {f"sensitivity_at_{r}_fp_per_image" for r in ("0.5", "1", "2",
                                                                             "4")}
    assert "AP@0.5" in res.output and "FROC" in res.output


def test_evaluate_on_a_coco_json(demo_models_dir: Path, tmp_path: Path) -> None:
    """A COCO-style file with one .npy and one 16-bit PNG image."""
    images, anns = [], []
    for i, (fmt, n_frac) in enumerate((("npy", 1), ("png", 0))):
        ph = make_radiograph(RadiographSpec(body_part="WRIST", fractures=n_frac, seed=40 + i,
                                            family="heldout", rows=480, cols=400))
        name = f"img{i}.{fmt}"
        if fmt == "npy":
            np.save(tmp_path / name, ph.image)
        else:
            Image.fromarray(ph.image.astype(np.uint16)).save(tmp_path / name)
        images.append({"id": i, "file_name": name, "width": 400, "height": 480})
        anns += [{"id": len(anns), "image_id": i, "category_id": 1,
                  "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for b in ph.boxes]
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "fracture"}]}))
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["evaluate", "fracture", "--data", str(coco), "--body-part",
                              "wrist", "--json", str(out), "--models", str(demo_models_dir)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["n_images"] == 2 and rep["n_positive_images"] == 1 and rep["n_truth_boxes"] == 1


def test_tiny_training_run_writes_a_verifiable_model(tmp_path: Path) -> None:
    out = tmp_path / "fracture-tiny"
    res = runner.invoke(app, ["train", "fracture", "--out", str(out), "--epochs", "3",
                              "--n-train", "6", "--n-test", "4"])
    assert res.exit_code == 0, res.output
    reg = ModelRegistry([tmp_path], device="cpu")
    assert reg.ids() == ["fracture-demo"]
    card = reg.card("fracture-demo")
    assert card.training_data["config"]["steps"] == 3
    assert card.metrics["family"] == "heldout" and card.metrics["n_images"] == 4
    assert reg.verify("fracture-demo").files_checked == 1
    # a second stage continues from the first one's weights, as the committed demo was made
    again = tmp_path / "stage2" / "fracture-demo"
    res = runner.invoke(app, ["train", "fracture", "--out", str(again), "--epochs", "2",
                              "--n-train", "6", "--n-test", "4", "--lr", "0.001",
                              "--init-from", str(out / "weights.pt")])
    assert res.exit_code == 0, res.output
    config = ModelRegistry([again.parent], device="cpu").card("fracture-demo").training_data[
        "config"]
    assert config["lr"] == 0.001 and config["init_from"] == str(out / "weights.pt")
