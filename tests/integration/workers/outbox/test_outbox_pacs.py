"""DICOM results to a real PACS (Orthanc): C-STORE while the PACS is down, then up, and
STOW-RS to its DICOMweb plugin. The clock is injected, so hours of backoff take no time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from tests.integration.workers.outbox.outbox_support import (
    MovableClock,
    running_job,
    succeed,
    write_dicom_outputs,
)
from tests.support.net import free_port
from tests.support.peers.orthanc import requires_orthanc, running_orthanc
from workers.config import WorkersConfig
from workers.outbox import admin
from workers.outbox.config import DeliveryConfig
from workers.outbox.metrics import register_delivery_metrics
from workers.outbox.runner import DeliveryRunner

BACKOFF = {"base_s": 60, "factor": 2, "max_delay_s": 3600, "jitter": 0}


def _states(engine: Engine) -> list[tuple[str, int]]:
    return sorted((d.state, d.attempts) for d in admin.list_deliveries(engine))


@requires_orthanc
def test_pacs_down_then_up_gets_each_result_exactly_once(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    port = free_port()  # nobody listens here until Orthanc is started on it
    delivery = DeliveryConfig.model_validate({"backoff": BACKOFF, "destinations": [
        {"type": "dicom", "name": "pacs", "host": "127.0.0.1", "port": port,
         "called_ae": "ORTHANC", "connect_timeout_s": 2}]})
    cfg = WorkersConfig(delivery=delivery)
    outputs = write_dicom_outputs(tmp_path / "out")
    assert len(outputs.refs) == 3  # SEG, KOS, SR
    job = running_job(engine, cfg, clock())
    succeed(engine, job, clock(), outputs.refs)
    registry = CollectorRegistry()
    runner = DeliveryRunner(engine, cfg, clock=clock,
                            metrics=register_delivery_metrics(registry, engine))

    first = runner.run_due_once()
    assert (first.planned, first.claimed, first.retried) == (3, 3, 3)
    assert _states(engine) == [("pending", 1)] * 3
    view = admin.list_deliveries(engine)[0]
    assert view.next_try_at == clock() + timedelta(seconds=60)
    assert view.last_reason == "transient"
    assert runner.run_due_once().claimed == 0  # backing off: nothing due yet

    clock.advance(61)
    assert runner.run_due_once().retried == 3
    assert admin.list_deliveries(engine)[0].next_try_at == clock() + timedelta(seconds=120)

    with running_orthanc(tmp_path / "orthanc", extra={"DicomPort": port}) as pacs:
        clock.advance(121)
        third = runner.run_due_once()
        assert (third.claimed, third.delivered) == (3, 3)
        assert _states(engine) == [("delivered", 3)] * 3
        for ref in outputs.refs:
            assert pacs.find_instance(ref.uid) is not None
        # hours later nothing is sent again
        clock.advance(6 * 3600)
        assert runner.run_due_once().claimed == 0
        assert len(pacs.instances()) == 3
        studies = pacs.get("/studies?expand")
        assert [s["MainDicomTags"]["StudyInstanceUID"] for s in studies] == [
            outputs.study_instance_uid]

    value = registry.get_sample_value
    assert value("infernode_deliveries_total", {"destination": "pacs", "outcome": "retry"}) == 6
    assert value("infernode_deliveries_total",
                 {"destination": "pacs", "outcome": "delivered"}) == 3
    assert value("infernode_delivery_latency_seconds_count", {"destination": "pacs"}) == 3
    assert value("infernode_delivery_backlog", {"destination": "pacs"}) is None
    runner.stop()


@requires_orthanc
def test_stow_rs_to_the_pacs_dicomweb_service(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    outputs = write_dicom_outputs(tmp_path / "out")
    with running_orthanc(tmp_path / "orthanc") as pacs:
        delivery = DeliveryConfig.model_validate({"backoff": BACKOFF, "destinations": [
            {"type": "stow", "name": "dicomweb", "base_url": pacs.dicomweb_url}]})
        cfg = WorkersConfig(delivery=delivery)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), outputs.refs)
        registry = CollectorRegistry()
        runner = DeliveryRunner(engine, cfg, clock=clock,
                                metrics=register_delivery_metrics(registry, engine))
        report = runner.run_due_once()
        assert (report.claimed, report.delivered) == (3, 3)
        for ref in outputs.refs:
            stored = pacs.find_instance(ref.uid)
            assert stored is not None
            assert pacs.instance_file(stored) == Path(ref.path or "").read_bytes()
        # one request carried the three instances
        assert registry.get_sample_value("infernode_delivery_send_seconds_count",
                                         {"destination": "dicomweb"}) == 1
        runner.stop()


@requires_orthanc
def test_a_refused_instance_is_dead_and_the_rest_of_the_batch_delivered(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    outputs = write_dicom_outputs(tmp_path / "out")
    broken = tmp_path / "out" / "not-dicom.dcm"
    broken.write_bytes(b"this is not a DICOM file")
    refs = (*outputs.refs, outputs.refs[0].model_copy(update={"uid": "2.25.1",
                                                             "path": str(broken)}))
    with running_orthanc(tmp_path / "orthanc") as pacs:
        delivery = DeliveryConfig.model_validate({"destinations": [
            {"type": "dicom", "name": "pacs", "host": "127.0.0.1", "port": pacs.dicom_port,
             "called_ae": pacs.aet}]})
        cfg = WorkersConfig(delivery=delivery)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), refs)
        report = DeliveryRunner(engine, cfg, clock=clock).run_due_once()
        assert (report.delivered, report.dead) == (3, 1)
        dead = admin.dead_letters(engine)
        assert [(d.uid, d.last_reason) for d in dead] == [("2.25.1", "invalid_output")]
        assert len(pacs.instances()) == 3
