"""send_mllp against a real TCP listener on loopback that speaks MLLP and answers with ACKs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from hl7_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hl7_fhir.hl7v2 import build_oru, send_mllp, validate_strict
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study
from tests.support.peers.mllp import Listener, mllp_listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    with mllp_listener() as state:
        yield state


def _oru(control_id: str = "CTL1") -> str:
    return build_oru(
        sample_study("ich"), sample_findings("ich"), sample_device(), fixed_clock(), control_id,
        conclusion="Intracranial hemorrhage suspected.\nSee images.",
    )


@pytest.mark.parametrize("mode", ["AA", "chunked"])
def test_accepted_message_arrives_intact(listener: Listener, mode: str) -> None:
    listener.mode = mode
    message = _oru()
    ack = send_mllp(message, "127.0.0.1", listener.port, timeout_s=5)
    assert (ack.code, ack.control_id, ack.accepted) == ("AA", "CTL1", True)
    assert listener.received == [message]
    validate_strict(listener.received[0])


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("AE", TransientDeliveryError),
        ("CE", TransientDeliveryError),
        ("AR", PermanentDeliveryError),
        ("CR", PermanentDeliveryError),
        ("wrong-id", TransientDeliveryError),
        ("close", TransientDeliveryError),
    ],
)
def test_negative_acks_and_broken_peers(listener: Listener, mode: str, error: type) -> None:
    listener.mode = mode
    with pytest.raises(error) as info:
        send_mllp(_oru(), "127.0.0.1", listener.port, timeout_s=5)
    assert type(info.value) is error
    assert "Sample" not in str(info.value) and "PAT" not in str(info.value)


def test_silent_peer_times_out(listener: Listener) -> None:
    listener.mode = "silent"
    with pytest.raises(TransientDeliveryError, match="timed out"):
        send_mllp(_oru(), "127.0.0.1", listener.port, timeout_s=0.3)


def test_nobody_listening_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientDeliveryError, match="connection failed"):
        send_mllp(_oru(), "127.0.0.1", port, timeout_s=2)


def test_message_without_control_id_is_refused_before_sending(listener: Listener) -> None:
    with pytest.raises(ValueError):
        send_mllp("PID|1\r", "127.0.0.1", listener.port)
    assert listener.received == []


def test_unicode_names_and_a_long_reason_arrive_as_utf8(listener: Listener) -> None:
    """MSH-18 says UNICODE UTF-8; the listener decodes the frame as UTF-8 and gets every name
    group and the whole (split) reason back."""
    study = sample_study("ich").model_copy(
        update={"patient_name": "Yamada^Tarou=山田^太郎=やまだ^たろう"})
    reason = "Not analysed: en-tête illisible | 頭部CTの系列が不完全です. " * 30
    message = build_oru(study, (), sample_device(), fixed_clock(), "CTL-U", conclusion=reason)
    ack = send_mllp(message, "127.0.0.1", listener.port, timeout_s=5)
    assert ack.accepted
    (received,) = listener.received
    assert received == message
    validate_strict(received)
    msh, pid = received.split("\r")[:2]
    assert msh.split("|")[17] == "UNICODE UTF-8"
    assert pid.split("|")[5].split("~")[1].startswith("山田^太郎")
    assert received.count("頭部CTの系列が不完全です") == 30
