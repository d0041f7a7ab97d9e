"""C-STORE of phantom head CTs -> ICH job -> SR, KOS, FHIR Bundle and ORU written before the
job completes, each checked by an independent validator."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pydicom
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from hl7apy.parser import parse_message

from infernode.samples import write_sample_studies
from tests.support.peers.dcmtk import storescu


def _finished_jobs(node, count: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        with node.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.text(
                "SELECT study_instance_uid, state, result FROM jobs")).mappings()]
        if len(rows) >= count and all(r["state"] == "succeeded" for r in rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"jobs did not finish: {rows}")


def test_positive_and_negative_head_ct_get_validated_outputs(node_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    node = node_factory()
    studies = write_sample_studies(tmp_path / "samples", with_mr=False)
    files = sorted((tmp_path / "samples").rglob("*.dcm"))
    assert storescu(node.server.port, files).returncode == 0
    rows = _finished_jobs(node, 2)
    by_study = {r["study_instance_uid"]: r for r in rows}
    positive, negative = (by_study[s.study_instance_uid] for s, _ in studies)
    for row, expect_flag in ((positive, True), (negative, False)):
        result = row["result"] if isinstance(row["result"], dict) else json.loads(row["result"])
        assert (result.get("priority_flag") is not None) is expect_flag
        outputs = {o["kind"]: [] for o in result["outputs"]}
        for o in result["outputs"]:
            outputs[o["kind"]].append(Path(o["path"]))
        for path in outputs["dicom"]:
            check = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True,
                                   text=True, check=False)
            errors = [ln for ln in check.stderr.splitlines() if ln.startswith("Error")]
            assert errors == [], (path, errors)
            ds = pydicom.dcmread(path)
            assert ds.StudyInstanceUID == row["study_instance_uid"]
        modalities = sorted(pydicom.dcmread(p).Modality for p in outputs["dicom"])
        assert modalities == (["KO", "SEG", "SR"] if expect_flag else ["SR"])
        [bundle_path] = outputs["fhir-bundle"]
        bundle = Bundle.model_validate_json(bundle_path.read_text())
        report = next(e.resource for e in bundle.entry
                      if e.resource.__resource_type__ == "DiagnosticReport")
        assert report.status == "preliminary"
        [oru_path] = outputs["hl7-oru"]
        message = parse_message(oru_path.read_text().replace("\n", "\r"), validation_level=1)
        assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    # No PHI in what the node logged on the way, at any level.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged, "nothing was logged: the check below would be empty"
    for identity, _ in studies:
        for phi in (identity.patient_name, identity.patient_id, identity.accession_number):
            assert phi not in logged


def test_status_counts_jobs_and_deliveries(node_factory, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from infernode.cli import app

    node = node_factory()
    write_sample_studies(tmp_path / "samples", with_mr=False)
    files = sorted((tmp_path / "samples" / "study2").glob("*.dcm"))  # the normal phantom
    assert storescu(node.server.port, files).returncode == 0
    _finished_jobs(node, 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with node.engine.connect() as conn:
            states = [r[0] for r in conn.execute(sa.text("SELECT state FROM deliveries"))]
        if states and set(states) == {"delivered"}:
            break
        time.sleep(0.2)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": node.settings.database.url}}))
    result = CliRunner().invoke(app, ["status", "-c", str(cfg)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "jobs succeeded" in result.output
    assert "deliveries to facade delivered" in result.output
