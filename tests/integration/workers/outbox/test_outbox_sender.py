"""Results back to the modality that sent the study: its AE title from the instance index, its
address from the destination's `senders` table; DCMTK storescp plays the modality's SCP."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pydicom
from sqlalchemy import Engine

from dicom_node.index.headers import InstanceHeader
from dicom_node.index.store import IndexStore, Receipt
from tests.integration.workers.outbox.outbox_support import (
    MovableClock,
    running_job,
    succeed,
    wait_until,
    write_dicom_outputs,
)
from tests.support.net import free_port
from tests.support.peers.dcmtk import DCMTK_BIN
from workers.config import WorkersConfig
from workers.outbox import admin
from workers.outbox.config import DeliveryConfig
from workers.outbox.runner import DeliveryRunner


def _index_sender(engine: Engine, study_uid: str, ae_title: str, clock: MovableClock) -> None:
    header = InstanceHeader(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"{study_uid}.9.1",
        study_instance_uid=study_uid, series_instance_uid=f"{study_uid}.9",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="CT", body_part_examined="HEAD",
        series_description=None, protocol_name=None, image_type=("ORIGINAL", "PRIMARY"),
        series_number=1, instance_number=1, slice_thickness=5.0, images_in_acquisition=None,
        patient_id=None, accession_number=None, study_date=None)
    IndexStore(engine).record_instance(
        header, path="/dev/null", size_bytes=1,
        receipt=Receipt(calling_ae=ae_title, called_ae="INFERNODE", at=clock()),
        quiet_period_s=1)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _config(port: int) -> WorkersConfig:
    return WorkersConfig(delivery=DeliveryConfig.model_validate({"destinations": [
        {"type": "sender", "senders": {"MODALITY1": {"host": "127.0.0.1", "port": port}}}]}))


def test_results_go_back_to_the_sending_modality(engine: Engine, clock: MovableClock,
                                                 tmp_path: Path) -> None:
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    scp = subprocess.Popen([str(DCMTK_BIN / "storescp"), "-aet", "MODALITY1", "-od",
                            str(received), str(port)])
    try:
        wait_until(lambda: _listening(port), 10, "storescp listening")
        outputs = write_dicom_outputs(tmp_path / "out")
        _index_sender(engine, outputs.study_instance_uid, "MODALITY1", clock)
        cfg = _config(port)
        job = running_job(engine, cfg, clock(), study_uid=outputs.study_instance_uid)
        succeed(engine, job, clock(), outputs.refs)
        runner = DeliveryRunner(engine, cfg, clock=clock)
        report = wait_until(lambda: runner.run_due_once().delivered or None, 20,
                            "delivery to the modality")
        assert report == 3
        uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                for f in received.iterdir()}
        assert uids == {ref.uid for ref in outputs.refs}
    finally:
        scp.terminate()
        scp.wait(timeout=10)


def test_a_sender_without_a_return_address_is_dead_with_the_reason(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    outputs = write_dicom_outputs(tmp_path / "out")
    _index_sender(engine, outputs.study_instance_uid, "OTHERMOD", clock)
    cfg = _config(free_port())
    job = running_job(engine, cfg, clock(), study_uid=outputs.study_instance_uid)
    succeed(engine, job, clock(), outputs.refs)
    DeliveryRunner(engine, cfg, clock=clock).run_due_once()
    rows = admin.list_deliveries(engine)
    assert [(d.state, d.last_reason) for d in rows] == [("dead", "no_return_address")] * 3
    assert "OTHERMOD" in (rows[0].last_error or "")
