"""Export of the audit trail to a real rsyslog (Debian) on loopback, started by the test with a
private configuration: RFC 5424 over TCP with octet counting, and over TLS (RFC 5425); each
message's XML validated against the DICOM audit message structure (PS3.15 A.5.1); nothing
lost or repeated while the repository is down."""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from infernode.audit import AuditEvent, AuditLog, Category, Outcome
from infernode.audit_export import AuditExporter
from infernode.db import create_engine, migrate
from infernode.settings import SyslogConfig
from tests.support.net import free_port
from tests.support.waiting import wait_until

SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).with_name("dicom_audit_message.rng"))))
STUDY = "1.2.826.0.1.3680043.8.498.1"


class Rsyslog:
    """rsyslogd in the foreground with its own configuration, port, work folder and file."""

    FIELDS = ("facility", "severity", "hostname", "app", "procid", "msgid", "sd", "msg")

    def __init__(self, folder: Path, tls: Path | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.out = folder / "audit.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (folder / "work").mkdir(parents=True, exist_ok=True)
        driver = ""
        tls_globals = ""
        if tls is not None:
            tls_globals = (f' defaultNetstreamDriverCAFile="{tls}/ca.pem"'
                           f' defaultNetstreamDriverCertFile="{tls}/server.pem"'
                           f' defaultNetstreamDriverKeyFile="{tls}/server.key"')
            driver = ' streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"'
        template = "|".join(f"%{p}%" for p in (
            "syslogfacility", "syslogseverity", "hostname", "app-name", "procid", "msgid",
            "structured-data", "msg"))
        self.conf = folder / "rsyslog.conf"
        self.conf.write_text(f"""
global(workDirectory="{folder / 'work'}" maxMessageSize="64k"{tls_globals})
module(load="imtcp"{driver})
template(name="fields" type="string" string="{template}\\n")
input(type="imtcp" port="{self.port}" address="127.0.0.1" ruleset="audit")
ruleset(name="audit") {{
  action(type="omfile" file="{self.out}" template="fields" flushOnTXEnd="on" asyncWriting="off")
}}
""")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.folder / "rsyslog.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(listening, 20, "rsyslogd to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def messages(self) -> list[dict[str, str]]:
        if not self.out.exists():
            return []
        lines = self.out.read_text(encoding="utf-8").splitlines()
        return [dict(zip(self.FIELDS, line.split("|", 7), strict=True)) for line in lines]

    def wait_for(self, count: int) -> list[dict[str, str]]:
        wait_until(lambda: len(self.messages()) >= count, 20, f"{count} messages in rsyslog")
        return self.messages()


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path / "rsyslog")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def audit_log(tmp_path: Path) -> AuditLog:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(engine)
    return AuditLog(engine)


def every_kind() -> list[AuditEvent]:
    return [
        AuditEvent(Category.CONFIG, "loaded", actor="INFERNODE", detail={"sha256": "ab"}),
        AuditEvent(Category.ASSOCIATION, "accepted", actor="MODALITY1", source="127.0.0.1",
                   subject="INFERNODE"),
        AuditEvent(Category.ASSOCIATION, "rejected", Outcome.FAILURE, actor="STRANGER",
                   source="127.0.0.1", subject="INFERNODE", detail={"reason": "calling_ae"}),
        AuditEvent(Category.INSTANCES, "received", actor="MODALITY1", source="127.0.0.1",
                   subject=STUDY, detail={"count": 3, "sop_instance_uids": ["1", "2", "3"]}),
        AuditEvent(Category.ROUTING, "study_ready", subject=STUDY, detail={"series": 1}),
        AuditEvent(Category.JOB, "run", actor="embedded@host/0", subject=STUDY,
                   detail={"pipeline": "ich", "state": "succeeded", "key": "job:1"}),
        AuditEvent(Category.DELIVERY, "deliver", Outcome.FAILURE, actor="pacs", subject=STUDY,
                   detail={"destination": "pacs", "kind": "sr", "state": "dead",
                           "reason": "refused", "key": "delivery:1"}),
        AuditEvent(Category.FHIR_READ, "read", actor="token:0123456789ab", source="127.0.0.1",
                   subject="Patient/p1", detail={"resource_type": "Patient", "status": 200}),
        AuditEvent(Category.FHIR_READ, "search", actor="token:0123456789ab",
                   source="127.0.0.1", subject="Patient/p1",
                   detail={"resource_type": "DiagnosticReport", "query": "patient=p1"}),
        AuditEvent(Category.LOGIN, "login", Outcome.FAILURE, actor="operator1",
                   source="192.0.2.7"),
        AuditEvent(Category.CONSOLE, "replay_delivery", actor="operator1", source="192.0.2.7"),
        AuditEvent(Category.APPLICATION, "stop", actor="INFERNODE"),
    ]


def parse(message: dict[str, str]) -> Any:
    xml = message["msg"].lstrip().removeprefix("\ufeff")
    root = etree.fromstring(xml.encode())
    SCHEMA.assertValid(root)
    return root


def exporter(audit_log: AuditLog, server: Rsyslog, tmp_path: Path, **cfg: Any) -> AuditExporter:
    config = SyslogConfig.model_validate({
        "host": "127.0.0.1", "port": server.port, "tls": False, "timeout_s": 5,
        "enterprise_site_id": "HOSPITAL", "batch": 4, **cfg})
    return AuditExporter(audit_log, config, tmp_path / "cursor", source_id="infernode@test")


def test_every_kind_of_event_arrives_as_a_valid_dicom_audit_message(
        audit_log: AuditLog, rsyslog: Rsyslog, tmp_path: Path) -> None:
    events = every_kind()
    audit_log.record_many(events)
    sent = exporter(audit_log, rsyslog, tmp_path)
    assert sent.send_pending() == len(events)
    messages = rsyslog.wait_for(len(events))
    assert len(messages) == len(events)
    roots = [parse(m) for m in messages]
    for m in messages:  # authpriv.notice, or warning for a failure; RFC 5424 header parsed
        assert m["facility"] == "10" and m["severity"] in ("5", "4")
        assert m["app"] == "infernode" and m["msgid"] == "IHE+RFC-3881" and m["sd"] == "-"
    event_ids = [r.find("EventIdentification/EventID").get("csd-code") for r in roots]
    assert event_ids == ["110113", "110114", "110113", "110104", "110103", "110103", "110104",
                         "110110", "110112", "110114", "110113", "110100"]
    assert all(r.find("EventIdentification/EventID").get("codeSystemName") == "DCM"
               for r in roots)
    rejected = roots[2]
    assert rejected.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert rejected.find("EventIdentification/EventTypeCode").get("csd-code") == "110126"
    assert rejected.find("EventIdentification/EventOutcomeDescription").text == "calling_ae"
    source = rejected.find("ActiveParticipant")
    assert (source.get("UserID"), source.get("NetworkAccessPointID")) == ("STRANGER",
                                                                         "127.0.0.1")
    received = roots[3]
    study = received.find("ParticipantObjectIdentification")
    assert study.get("ParticipantObjectID") == STUDY
    assert study.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"
    assert [p.find("RoleIDCode").get("csd-code") for p in received.findall(
        "ActiveParticipant")] == ["110153", "110152"]
    assert received.find("AuditSourceIdentification").get("AuditEnterpriseSiteID") == "HOSPITAL"
    search = roots[8]
    objects = search.findall("ParticipantObjectIdentification")
    assert objects[0].get("ParticipantObjectID") == "p1"
    query = objects[1].find("ParticipantObjectQuery").text
    assert base64.b64decode(query).decode() == "DiagnosticReport?patient=p1"
    assert roots[0].find("EventIdentification/EventTypeCode").get("csd-code") == "110131"
    assert roots[-1].find("EventIdentification/EventTypeCode").get("csd-code") == "110121"
    assert roots[-1].find("ActiveParticipant/RoleIDCode").get("csd-code") == "110150"


def test_a_repository_that_is_down_loses_nothing_and_gets_nothing_twice(
        audit_log: AuditLog, tmp_path: Path) -> None:
    server = Rsyslog(tmp_path / "rsyslog")
    try:
        sender = exporter(audit_log, server, tmp_path)
        audit_log.record_many(every_kind()[:5])
        with pytest.raises(OSError):  # nothing listens yet
            sender.send_pending()
        assert sender.cursor() == 0
        server.start()
        assert sender.send_pending() == 5
        assert len(server.wait_for(5)) == 5

        server.stop()
        audit_log.record_many(every_kind()[5:])
        with pytest.raises(OSError):
            sender.send_pending()
        assert sender.cursor() == 5
        server.start()
        # a new exporter (a restarted node) resumes from the saved cursor
        resumed = exporter(audit_log, server, tmp_path)
        assert resumed.send_pending() == len(every_kind()) - 5
        messages = server.wait_for(len(every_kind()))
        assert len(messages) == len(every_kind())
        actions = [parse(m).find("EventIdentification/EventID").get("originalText")
                   for m in messages]
        assert actions.count("Query") == 1 and actions.count("Patient Record") == 1
    finally:
        server.stop()


def test_export_over_tls(audit_log: AuditLog, tmp_path: Path, pki: Path) -> None:
    server = Rsyslog(tmp_path / "rsyslog-tls", tls=pki)
    server.start()
    try:
        audit_log.record_many(every_kind()[:3])
        sender = exporter(audit_log, server, tmp_path, tls=True, ca_file=pki / "ca.pem")
        assert sender.send_pending() == 3
        assert [parse(m).find("ActiveParticipant").get("UserID")
                for m in server.wait_for(3)] == ["infernode@test", "MODALITY1", "STRANGER"]
        untrusting = exporter(audit_log, server, tmp_path / "other", tls=True)
        audit_log.record(every_kind()[3])
        with pytest.raises(OSError):  # the system trust store does not know the test CA
            untrusting.send_pending()
    finally:
        server.stop()
