"""Through a real node: a head CT phantom sent with DCMTK storescu is analysed by the ich
pipeline; the runner's monitoring facts are recorded with the job (scanner, slice thickness,
intensities, score, hashed accession), aggregated, and matched to a final report sent over
MLLP to the node's listener."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from hl7_fhir.hl7v2.mllp import send_mllp
from inference.phantoms.head_ct import PhantomSpec, make_head_ct
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
        spec = PhantomSpec(shape=(12, 128, 128), pixel_mm=1.8, subtypes=("subdural",),
                           seed=41)
        hu = np.round(make_head_ct(spec).volume.array).astype(np.int16)
        identity = StudyIdentity(accession_number="MONACC01", patient_id="MON-0001")
        files = write_series(volume_series(hu, (spec.slice_mm, spec.pixel_mm, spec.pixel_mm),
                                           identity=identity, spec=SeriesSpec()),
                             str(tmp_path / "src"))
        assert storescu(node.server.port, [Path(f) for f in files]).returncode == 0

        def finished() -> dict | None:
            with node.engine.connect() as conn:
                row = conn.execute(sa.select(jobs).where(
                    jobs.c.study_instance_uid == identity.study_instance_uid,
                    jobs.c.state.in_(["succeeded", "failed"]))).mappings().first()
            return dict(row) if row else None

        job = wait_until(finished, 240, "the ich job to finish")
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

        now = utcnow()
        (row,) = aggregate_day(node.engine, now.date(), lambda p, v: None, now)
        assert (row["pipeline"], row["jobs"], row["results"]) == ("ich", 1, 1)
        assert row["inputs"]["kernel"] == {facts["kernel"]: 1}
        (group,) = agreement(node.engine, now - timedelta(days=1), now + timedelta(days=1))
        assert (group.tp, group.fn) == ((1, 0) if positive else (0, 1))
        assert group.scanner == facts["scanner"]
    finally:
        node.stop()
