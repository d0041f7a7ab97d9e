"""`infernode route --explain` on real DICOM files and recorded studies, and the
`infernode jobs` commands against a node database migrated the way the node migrates it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dicom_node.synth import SeriesSpec, StudyIdentity, radiograph, volume_series, write_series
from infernode import cli_jobs
from infernode.db import create_engine, migrate
from workers import samples
from workers.admin import get_job
from workers.config import WorkersConfig
from workers.db import utcnow
from workers.jobs import claim, fail
from workers.messages import JobState
from workers.submit import on_study_ready


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(cli_jobs.app, name="jobs")
    app.command("route")(cli_jobs.route)
    app.command("worker")(cli_jobs.worker)
    return app


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "infernode.yaml"
    path.write_text(f"database:\n  url: sqlite:///{tmp_path / 'node.db'}\n")
    return path


def _ct(folder: Path, spec: SeriesSpec, identity: StudyIdentity, slices: int) -> None:
    volume = np.zeros((slices, 16, 16), dtype=np.int16)
    write_series(volume_series(volume, (5.0, 0.5, 0.5), identity=identity, spec=spec),
                 str(folder))


def test_route_explain_on_dicom_files(tmp_path: Path, cli: typer.Typer,
                                      settings_file: Path) -> None:
    head = StudyIdentity()
    _ct(tmp_path / "head", SeriesSpec(series_description="Head 5mm axial"), head, 12)
    _ct(tmp_path / "head", SeriesSpec(series_description="Topogram", series_number=1,
                                      image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), head, 1)
    result = CliRunner().invoke(cli, ["route", str(tmp_path / "head"), "--explain",
                                      "--config", str(settings_file)])
    assert result.exit_code == 0, result.output
    assert "rule ich-ct-head -> ich: MATCHED (1 series matched)" in result.output
    assert "excluded CT 'Topogram' [localizer]" in result.output
    assert "Modality equals 'MR' [value 'CT'] -> false" in result.output
    assert "=> routed to ich (stat, 1 series)" in result.output

    abdomen = StudyIdentity(study_description="CT ABDOMEN")
    _ct(tmp_path / "abd", SeriesSpec(series_description="Abdomen 5mm", body_part="ABDOMEN",
                                     protocol_name="ABDOMEN"), abdomen, 12)
    wrist = StudyIdentity(study_description="XR WRIST")
    write_series([radiograph(np.zeros((32, 32), dtype=np.uint16), (0.2, 0.2), identity=wrist,
                             spec=SeriesSpec(modality="DX", body_part="WRIST",
                                             series_description="Wrist PA"))],
                 str(tmp_path / "wrist"))
    for folder, expected in (("abd", "(not routed)"), ("wrist", "fracture")):
        result = CliRunner().invoke(cli, ["route", str(tmp_path / folder),
                                          "--config", str(settings_file)])
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith(expected)


def test_jobs_commands_and_route_explain_of_a_recorded_study(tmp_path: Path, cli: typer.Typer,
                                                             settings_file: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'node.db'}")
    migrate(engine)
    cfg = WorkersConfig(max_attempts=1)
    study = samples.ct_head_study()
    (job,) = on_study_ready(engine, cfg, study)
    now = utcnow()
    claim(engine, cfg, job.id, "w", "cpu", now)
    fail(engine, cfg, job.id, 1, permanent=False, reason="pacs_down", error="refused", now=now)
    runner = CliRunner()
    base = ["--config", str(settings_file)]

    listed = runner.invoke(cli, ["jobs", "dead-letters", "--json", *base])
    assert listed.exit_code == 0, listed.output
    (dead,) = json.loads(listed.output)
    assert dead["id"] == job.id and "gave up after 1 attempts" in dead["last_error"]

    shown = runner.invoke(cli, ["jobs", "show", job.id, *base])
    assert json.loads(shown.output)["attempt_history"][0]["reason"] == "pacs_down"

    assert runner.invoke(cli, ["jobs", "replay", *base]).exit_code == 2
    replayed = runner.invoke(cli, ["jobs", "replay", "--all", *base])
    assert replayed.exit_code == 0 and "1 job(s) queued again" in replayed.output
    assert get_job(engine, job.id).state is JobState.QUEUED

    refused = runner.invoke(cli, ["jobs", "retry", job.id, *base])
    assert refused.exit_code == 1 and "cannot retry a queued job" in refused.output
    queued = runner.invoke(cli, ["jobs", "list", "--state", "queued", "--json", *base])
    assert [j["id"] for j in json.loads(queued.output)] == [job.id]
    missing = runner.invoke(cli, ["jobs", "show", "no-such-job", *base])
    assert missing.exit_code == 1

    explained = runner.invoke(cli, ["route", study.study_instance_uid, "--explain", *base])
    assert explained.exit_code == 0, explained.output
    assert "excluded CT 'Dose Report'" not in explained.output  # it is an SR series
    assert "excluded SR 'Dose Report' [dose report]" in explained.output
    assert "excluded CT 'Head Cor MPR 3mm' [secondary or reformat]" in explained.output
    unknown = runner.invoke(cli, ["route", "1.2.3.4", *base])
    assert unknown.exit_code == 1


def test_worker_refuses_without_a_broker(cli: typer.Typer, settings_file: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--config", str(settings_file)])
    assert result.exit_code == 2 and "no broker configured" in result.output
