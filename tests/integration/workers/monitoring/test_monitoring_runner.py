"""Through a real node: two head CT phantoms sent with DCMTK storescu are analysed by the ich
pipeline; the runner's monitoring facts are recorded with the jobs (scanner, slice thickness,
intensities, score, hashed accession), aggregated, and matched to final reports sent over MLLP
to the node's listener; `models evaluate --layout history` evaluates the model on them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from typer.testing import CliRunner

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from hl7_fhir.hl7v2.mllp import send_mllp
from inference.phantoms.head_ct import PhantomSpec, make_head_ct
from infernode.cli import app
from infernode.node import Node
from infernode.settings import load_settings
from tests.support.peers.dcmtk import storescu
from tests.support.waiting import wait_until
from workers.db import jobs, utcnow
from workers.monitoring import features
from workers.monitoring.aggregate import aggregate_day
from workers.monitoring.agreement import agreement

REPO = Path(__file__).resolve().parents[4]


def test_runner_records_input_facts_that_meet_a_final_report(tmp_path: Path) -> None:
    settings = load_settings(
        None, data_dir=str(tmp_path), database={"url": f"sqlite:///{tmp_path / 'node.db'}"},
        dicom={"port": 0, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0,
               "quiet_period_s": 0.5, "assembly_poll_s": 0.1},
        web={"enabled": False}, workers={"embedded_poll_s": 0.05},
        inference={"model_paths": [str(REPO / "models")]},
        monitoring={"listener": {"host": "127.0.0.1", "port": 0}, "aggregate_every_s": 3600})
    rules = [r.model_copy(update={"quiet_period_s": 0.5}) for r in settings.workers.rules]
    settings.workers = settings.workers.model_copy(update={"rules": rules})
    node = Node.build(settings)
    node.start()
    try:
        identities = []
        for i, subtypes in enumerate([("subdural",), ()]):
            spec = PhantomSpec(shape=(12, 128, 128), pixel_mm=1.8, subtypes=subtypes,
                               seed=41 + i)
            hu = np.round(make_head_ct(spec).volume.array).astype(np.int16)
            identity = StudyIdentity(accession_number=f"MONACC0{i + 1}",
                                     patient_id=f"MON-000{i + 1}")
            files = write_series(volume_series(
                hu, (spec.slice_mm, spec.pixel_mm, spec.pixel_mm), identity=identity,
                spec=SeriesSpec()), str(tmp_path / f"src{i}"))
            assert storescu(node.server.port, [Path(f) for f in files]).returncode == 0
            identities.append(identity)

        def finished() -> list[dict] | None:
            with node.engine.connect() as conn:
                rows = conn.execute(sa.select(jobs).where(
                    jobs.c.state.in_(["succeeded", "failed"])).order_by(jobs.c.study_instance_uid)
                    ).mappings().all()
            return [dict(r) for r in rows] if len(rows) == 2 else None

        done = {r["study_instance_uid"]: r for r in wait_until(
            finished, 240, "the two ich jobs to finish")}
        job = done[identities[0].study_instance_uid]
        assert job["outcome"] == "result", job["last_error"]
        facts = features.decode(job["result"]["summary"])
        assert facts["accession"] == features.accession_key("MONACC01")
        assert "MONACC01" not in str(job["result"])  # only the hash is kept
        assert facts["scanner"].startswith("InferNode Phantom")
        assert facts["slice_thickness_mm"] == spec.slice_mm
        assert facts["pixel_spacing_mm"] == spec.pixel_mm
        assert 0.0 <= facts["score"] <= 1.0
        assert facts["intensity_p05"] < facts["intensity_mean"] < facts["intensity_p95"]

        positive = bool(job["result"]["summary"].get("positive"))
        oru = ("MSH|^~\\&|RIS|H|NODE|H|20261110101500||ORU^R01|R1|P|2.5.1\r"
               "OBR|1|P1|MONACC01|CTHEAD^CT head^L|||||||||||||||||||20261110101000|||F\r"
               "OBX|1|TX|59776-5^Findings^LN||Acute subdural haemorrhage.||||||F\r")
        assert node.monitoring is not None and node.monitoring.listener is not None
        assert send_mllp(oru, "127.0.0.1", node.monitoring.listener.port).code == "AA"
        normal = oru.replace("MONACC01", "MONACC02").replace("|R1|", "|R2|").replace(
            "Acute subdural haemorrhage.", "No evidence of intracranial haemorrhage.")
        assert send_mllp(normal, "127.0.0.1", node.monitoring.listener.port).code == "AA"

        now = utcnow()
        (row,) = aggregate_day(node.engine, now.date(), lambda p, v: None, now)
        assert (row["pipeline"], row["jobs"], row["results"]) == ("ich", 2, 2)
        assert row["inputs"]["kernel"] == {facts["kernel"]: 2}
        other = bool(done[identities[1].study_instance_uid]["result"]["summary"].get(
            "positive"))
        (group,) = agreement(node.engine, now - timedelta(days=1), now + timedelta(days=1))
        assert (group.tp, group.fn, group.fp, group.tn) == (
            int(positive), int(not positive), int(other), int(not other))
        assert group.scanner == facts["scanner"]

        # the model evaluated on the node's own history: index + labels gathered above
        out = tmp_path / "history.json"
        result = CliRunner().invoke(app, [
            "models", "evaluate", "ich-demo", "--layout", "history",
            "--data", settings.database.url, "--models", str(REPO / "models"),
            "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert "2 labelled studies read, 0 left out" in result.output
        report = json.loads(out.read_text())
        assert report["n_studies"] == 2 and list(report["per_class"]) == ["any"]
        metrics = report["per_class"]["any"]
        assert (metrics["n"], metrics["n_positive"]) == (2, 1)  # the two reports' labels
        assert metrics["tp"] + metrics["fn"] == 1 and metrics["tn"] + metrics["fp"] == 1
    finally:
        node.stop()
