"""HL7 v2 ORU^R01 over MLLP to a real TCP listener that answers with ACKs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.integration.workers.outbox.outbox_support import (
    MovableClock,
    running_job,
    succeed,
    write_oru,
)
from tests.support.peers.mllp import mllp_listener
from workers.config import WorkersConfig
from workers.errors import InvalidTransition
from workers.outbox import admin
from workers.outbox.config import DeliveryConfig
from workers.outbox.runner import DeliveryRunner


def _config(port: int) -> WorkersConfig:
    return WorkersConfig(delivery=DeliveryConfig.model_validate({"destinations": [
        {"type": "mllp", "name": "ris", "host": "127.0.0.1", "port": port, "timeout_s": 5}]}))


def test_oru_is_delivered_when_the_receiver_accepts(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with mllp_listener() as ris:
        cfg = _config(ris.port)
        ref = write_oru(tmp_path)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (ref,))
        assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().delivered == 1
        assert ris.received == [Path(ref.path or "").read_text(encoding="utf-8")]
        assert ris.received[0].split("\r")[0].split("|")[8] == "ORU^R01^ORU_R01"


def test_a_rejected_message_is_dead_and_a_silent_port_is_retried(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with mllp_listener() as ris:
        ris.mode = "AR"
        cfg = _config(ris.port)
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_oru(tmp_path),))
        assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().dead == 1
        (dead,) = admin.dead_letters(engine)
        assert dead.last_reason == "permanent" and "AR" in (dead.last_error or "")
    # the listener is gone: connection refused is transient
    admin.replay(engine, clock(), delivery_ids=[dead.id])
    report = DeliveryRunner(engine, _config(ris.port), clock=clock).run_due_once()
    assert report.retried == 1
    assert admin.get_delivery(engine, dead.id).state == "pending"


def test_an_operator_dead_letters_a_retrying_delivery_and_replays_it_later(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    with mllp_listener() as ris:
        port = ris.port
    cfg = _config(port)  # nobody listens: every try is a transient failure
    job = running_job(engine, cfg, clock())
    succeed(engine, job, clock(), (write_oru(tmp_path),))
    assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().retried == 1
    (pending,) = admin.list_deliveries(engine, states=("pending",))

    dead = admin.give_up(engine, pending.id, clock(), "the RIS was retired")
    assert dead.state == "dead" and dead.last_reason == "operator"
    assert "the RIS was retired" in (dead.last_error or "")
    clock.advance(3600)
    assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().retried == 0  # no more tries
    with pytest.raises(InvalidTransition, match="not pending"):
        admin.give_up(engine, pending.id, clock(), "again")

    with mllp_listener() as ris:
        admin.replay(engine, clock(), delivery_ids=[pending.id])
        cfg = _config(ris.port)
        assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().delivered == 1


def test_oru_over_tls_reaches_a_listener_that_requires_client_certificates(
        engine: Engine, clock: MovableClock, tmp_path: Path) -> None:
    from hl7_fhir.hl7v2.listener import MllpListener
    from hl7_fhir.hl7v2.mllp import server_tls_context
    from tests.support.peers.pki import make_pki

    pki = make_pki(tmp_path)
    received = []
    ris = MllpListener("127.0.0.1", 0, received.append, ssl_context=server_tls_context(
        str(pki / "server.pem"), str(pki / "server.key"), client_ca_file=str(pki / "ca.pem")))
    port = ris.start()
    try:
        cfg = WorkersConfig(delivery=DeliveryConfig.model_validate({"destinations": [
            {"type": "mllp", "name": "ris", "host": "127.0.0.1", "port": port, "timeout_s": 10,
             "tls": {"ca_file": str(pki / "ca.pem"), "cert_file": str(pki / "client.pem"),
                     "key_file": str(pki / "client.key")}}]}))
        job = running_job(engine, cfg, clock())
        succeed(engine, job, clock(), (write_oru(tmp_path),))
        assert DeliveryRunner(engine, cfg, clock=clock).run_due_once().delivered == 1
    finally:
        ris.stop()
    # The ORU the node writes is a preliminary result: read and acknowledged, not a final report.
    assert received == []
