"""`infernode monitor`: a reference captured from held-out phantom studies written as DICOM,
aggregates and agreement read back from a node database."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from hl7_fhir.labels import FinalReport
from inference.phantoms.head_ct import PhantomSpec, make_head_ct
from infernode.cli import app
from infernode.db import create_engine, migrate
from tests.integration.workers.monitoring.monitoring_support import (
    BEFORE,
    analysed_summary,
    finish_job,
)
from workers.config import WorkersConfig
from workers.monitoring.agreement import record_report
from workers.monitoring.config import default_label_rules
from workers.monitoring.reference import load_reference

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def test_reference_from_held_out_phantoms(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "ich-demo"
    model_dir.mkdir(parents=True)
    shutil.copy(REPO / "models" / "ich-demo" / "model.yaml", model_dir / "model.yaml")
    for i in range(4):
        spec = PhantomSpec(shape=(6, 96, 96), pixel_mm=2.4, family="heldout", seed=900 + i,
                           subtypes=("subdural",) if i % 2 else ())
        phantom = make_head_ct(spec)
        hu = np.round(phantom.volume.array).astype(np.int16)
        write_series(volume_series(
            hu, (spec.slice_mm, spec.pixel_mm, spec.pixel_mm),
            identity=StudyIdentity(accession_number=f"HO{i}"), spec=SeriesSpec()),
            str(tmp_path / "cases" / f"case{i}"))
    done = runner.invoke(app, ["monitor", "reference", str(model_dir), str(tmp_path / "cases")])
    assert done.exit_code == 0, done.output
    reference = load_reference(model_dir)
    assert reference is not None
    assert (reference.model, reference.version, reference.pipeline, reference.cases) == (
        "ich-demo", "0.2.0", "ich", 4)
    first = pydicom.dcmread(next((tmp_path / "cases").rglob("*.dcm")))
    scanner = f"{first.Manufacturer} {first.ManufacturerModelName}"
    assert dict(reference.features["scanner"].shares) == {scanner: 1.0}
    thickness = reference.features["slice_thickness_mm"]
    assert thickness.bin(float(first.SliceThickness)) in thickness.shares
    mean = reference.features["intensity_mean"]
    assert len(mean.edges) >= 1 and sum(mean.shares.values()) == pytest.approx(1.0)


def test_aggregate_drift_and_agreement_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = create_engine(url)
    migrate(engine)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(1)
    cfg = WorkersConfig()
    for i, (positive, text) in enumerate([(True, "Acute subdural haemorrhage."),
                                          (True, "No haemorrhage."),
                                          (False, "No evidence of haemorrhage.")]):
        finish_job(engine, cfg, today + timedelta(minutes=i), summary=analysed_summary(
            BEFORE[0], rng, f"K{i}", positive, 0.7 if positive else 0.2))
        record_report(engine, FinalReport("hl7", f"r{i}", f"K{i}", text),
                      {"ich": default_label_rules()["ich"]}, today)
    engine.dispose()

    done = runner.invoke(app, ["monitor", "aggregate", "--db", url])
    assert done.exit_code == 0, done.output
    assert "1 daily aggregates written" in done.output
    done = runner.invoke(app, ["monitor", "drift", "--db", url, "--json"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.output)
    assert (row["pipeline"], row["jobs"], row["positives"]) == ("ich", 3, 2)
    done = runner.invoke(app, ["monitor", "agreement", "--db", url, "--json",
                               "--by", "pipeline,scanner"])
    assert done.exit_code == 0, done.output
    (group,) = json.loads(done.output)
    assert (group["tp"], group["fp"], group["fn"], group["tn"]) == (1, 1, 0, 1)
    assert group["scanner"] == "Siemens SOMATOM Force" and group["ppv"] == 0.5
    done = runner.invoke(app, ["monitor", "agreement", "--db", url, "--by", "weekday"])
    assert done.exit_code != 0


def test_reference_from_generated_held_out_phantoms(tmp_path: Path) -> None:
    model_dir = tmp_path / "fracture-demo"
    model_dir.mkdir()
    shutil.copy(REPO / "models" / "fracture-demo" / "model.yaml", model_dir / "model.yaml")
    done = runner.invoke(app, ["monitor", "reference", str(model_dir), "--phantoms", "3"])
    assert done.exit_code == 0, done.output
    reference = load_reference(model_dir)
    assert reference is not None
    assert (reference.pipeline, reference.cases) == ("fracture", 3)
    assert "3 held-out phantoms" in reference.source
    assert reference.features["kernel"].shares == {"none": 1.0}  # radiographs: no kernel
    stroke = tmp_path / "stroke"
    stroke.mkdir()
    shutil.copy(REPO / "models" / "stroke-adc-threshold" / "model.yaml", stroke / "model.yaml")
    refused = runner.invoke(app, ["monitor", "reference", str(stroke)])
    assert refused.exit_code == 2 and "give a folder of validation studies" in refused.output
