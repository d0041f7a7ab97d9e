"""Deterministic failures get one attempt and a delivered "not analysed" report; transient ones
are retried. Through a real node: DCMTK storescu sends a small head CT over C-STORE, the node
routes it and runs the configured pipeline on its embedded worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from pydantic import TypeAdapter

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from infernode.node import Node
from infernode.settings import load_settings
from tests.integration.workers.raising_pipelines import QUOTED_VALUE
from tests.integration.workers.workers_support import wait_until
from tests.support.peers.dcmtk import storescu
from workers.admin import outcome_counts
from workers.config import PipelineSpec
from workers.db import jobs
from workers.outbox.tables import outputs

RAISING = "tests.integration.workers.raising_pipelines"


def _node(tmp: Path, db_url: str, ich: dict[str, Any]) -> Node:
    settings = load_settings(
        None, data_dir=str(tmp), database={"url": db_url},
        dicom={"port": 0, "spool_dir": str(tmp / "spool"), "min_free_bytes": 0,
               "quiet_period_s": 0.5, "assembly_poll_s": 0.1},
        web={"enabled": False},
        workers={"retry_backoff_s": 0.0, "max_attempts": 2, "embedded_poll_s": 0.05},
        inference={"model_paths": [str(Path(__file__).resolve().parents[3] / "models")]},
    )
    rules = [r.model_copy(update={"quiet_period_s": 0.5}) for r in settings.workers.rules]
    # the ich entry replaced whole (a deep merge onto the default would keep its kind)
    pipelines = {**settings.workers.pipelines,
                 "ich": TypeAdapter(PipelineSpec).validate_python(ich)}
    settings.workers = settings.workers.model_copy(update={"rules": rules,
                                                           "pipelines": pipelines})
    return Node.build(settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def _send_head_ct(node: Node, folder: Path) -> str:
    identity = StudyIdentity(patient_name=QUOTED_VALUE, patient_id="NA-0001")
    hu = np.zeros((12, 32, 32), dtype=np.int16)
    files = write_series(volume_series(hu, (5.0, 1.0, 1.0), identity=identity,
                                       spec=SeriesSpec()), str(folder))
    assert storescu(node.server.port, [Path(f) for f in files]).returncode == 0
    return identity.study_instance_uid


def _job(node: Node, study: str) -> dict[str, Any] | None:
    with node.engine.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.study_instance_uid == study)
                           ).mappings().first()
    return dict(row) if row is not None else None


def _finished(node: Node, study: str) -> dict[str, Any] | None:
    row = _job(node, study)
    return row if row and row["state"] in ("succeeded", "failed", "dead_lettered") else None


def _texts(item: Any) -> list[str]:
    """Every TEXT value of an SR content tree."""
    found = [str(item.TextValue)] if "TextValue" in item else []
    for child in item.get("ContentSequence", []):
        found += _texts(child)
    return found


def _outputs(node: Node, job_id: str) -> list[dict[str, Any]]:
    with node.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(outputs).where(outputs.c.job_id == job_id)).mappings()]


def test_a_header_quirk_fails_once_and_is_reported_not_analysed(
        tmp_path: Path, db_url: str) -> None:
    node = _node(tmp_path, db_url, {"factory": f"{RAISING}:HeaderQuirk",
                                    "model_version": "quirk-1"})
    node.start()
    try:
        study = _send_head_ct(node, tmp_path / "study")
        row = wait_until(lambda: _finished(node, study), 120, "the job to finish")
        assert (row["state"], row["attempts"]) == ("failed", 1)
        assert (row["outcome"], row["error_reason"]) == ("not_analysed", "unexpected")
        assert row["outcome_reason"] == "unexpected"
        # the record names the type and place, never the value the exception quoted
        assert row["last_error"].startswith("AttributeError at ")
        assert QUOTED_VALUE not in row["last_error"]
        result = row["result"] if isinstance(row["result"], dict) else json.loads(row["result"])
        assert QUOTED_VALUE not in json.dumps(result)
        kinds = sorted(o["kind"] for o in _outputs(node, row["id"]))
        assert kinds == ["dicom", "fhir-bundle", "hl7-oru"]
        [sr_path] = [o["path"] for o in result["outputs"] if o["kind"] == "dicom"]
        sr = pydicom.dcmread(sr_path)
        assert sr.Modality == "SR" and sr.StudyInstanceUID == study
        texts = _texts(sr)
        assert any("could not process this study (AttributeError)" in t for t in texts), texts
        assert ("ich", "not_analysed", "unexpected", 1) in outcome_counts(node.engine)
    finally:
        node.stop()


def test_an_io_error_is_retried_until_the_attempts_run_out(tmp_path: Path) -> None:
    node = _node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}",
                 {"factory": f"{RAISING}:DiskHiccup", "model_version": "disk-1"})
    node.start()
    try:
        study = _send_head_ct(node, tmp_path / "study")
        row = wait_until(lambda: _finished(node, study), 120, "the job to give up")
        assert (row["state"], row["attempts"], row["error_reason"]) == (
            "dead_lettered", 2, "io_error")
        assert row["outcome"] is None and _outputs(node, row["id"]) == []
        assert QUOTED_VALUE not in row["last_error"]
    finally:
        node.stop()


def test_a_model_that_cannot_load_still_answers_with_a_report(tmp_path: Path) -> None:
    node = _node(tmp_path, f"sqlite:///{tmp_path / 'node.db'}",
                 {"kind": "ich", "model_version": "9.9.9", "model": "no-such-model"})
    node.start()
    try:
        study = _send_head_ct(node, tmp_path / "study")
        row = wait_until(lambda: _finished(node, study), 120, "the job to finish")
        assert (row["state"], row["attempts"], row["outcome"]) == ("failed", 1, "not_analysed")
        assert row["error_reason"] == "model_unavailable"
        result = row["result"] if isinstance(row["result"], dict) else json.loads(row["result"])
        assert "no-such-model" in result["summary"]["not_analysed"]
        assert {o["kind"] for o in _outputs(node, row["id"])} == {
            "dicom", "fhir-bundle", "hl7-oru"}
    finally:
        node.stop()
