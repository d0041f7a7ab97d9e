"""Pure pieces of the audit export and the web locks: RFC 6587 octet counting over UTF-8,
the RFC 5424 header, loopback detection, token identities, the CLI's time arguments."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import typer

from infernode.audit import AuditRecord
from infernode.audit_export import classify, syslog_frame, to_dicom_xml
from infernode.cli_audit import parse_time
from infernode.security import bearer_matches, is_loopback, token_identity

AT = datetime(2026, 12, 4, 21, 0, 0, 123000, tzinfo=UTC)


def record(**changes: object) -> AuditRecord:
    values: dict[str, object] = {
        "id": 7, "at": AT, "category": "association", "action": "rejected",
        "outcome": "failure", "actor": "ÉCHO CT", "source": "192.0.2.1",
        "subject": "INFERNODE", "detail": {"reason": "calling_ae"}}
    values.update(changes)
    return AuditRecord(**values)  # type: ignore[arg-type]


def test_octet_count_is_the_utf8_length_of_the_message() -> None:
    r = record()
    frame = syslog_frame(r, to_dicom_xml(r, source_id="infernode@h"), hostname="node 1",
                         app_name="infernode")
    count, _, message = frame.partition(b" ")
    assert int(count) == len(message)
    assert "ÉCHO CT".encode() in message
    header = message.decode().split(" ", 6)
    # <authpriv.warning>1 TIMESTAMP HOSTNAME APP PROCID MSGID, then SD "-" and BOM + XML
    assert header[0] == "<84>1" and header[1] == "2026-12-04T21:00:00.123Z"
    assert header[2] == "node1" and header[3] == "infernode" and header[5] == "IHE+RFC-3881"
    assert header[6].startswith("- \ufeff<AuditMessage>")


def test_success_is_notice_and_every_category_has_an_event() -> None:
    r = record(category="config", action="loaded", outcome="success", detail={})
    assert syslog_frame(r, "<x/>", hostname="h", app_name="a").split(b" ", 2)[1] == b"<85>1"
    for category in ("association", "instances", "routing", "job", "delivery", "fhir_read",
                     "login", "console", "config", "application"):
        assert classify(record(category=category)).event_id.scheme == "DCM"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.0.2.5", False),
    ("node.hospital.example", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tokens_match_exactly_and_are_named_without_being_revealed() -> None:
    tokens = (b"alpha-token", b"beta-token")
    assert bearer_matches("Bearer beta-token", tokens) == "beta-token"
    assert bearer_matches("bearer  alpha-token ", tokens) == "alpha-token"
    for header in ("Bearer beta", "Basic alpha-token", "Bearer ", "", "alpha-token"):
        assert bearer_matches(header, tokens) is None
    assert bearer_matches("Bearer anything", ()) is None
    identity = token_identity("alpha-token")
    assert identity == "token:" + hashlib.sha256(b"alpha-token").hexdigest()[:12]
    assert "alpha" not in identity


def test_cli_times() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parse_time("90m", now) == datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    assert parse_time("7d", now) == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_time("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_time("2026-12-01T08:00:00+01:00").astimezone(UTC).hour == 7
    with pytest.raises(typer.BadParameter):
        parse_time("yesterday")
