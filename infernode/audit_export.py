"""Export of the audit trail to an audit repository: DICOM audit messages (PS3.15 A.5, the
IHE ATNA format) carried by syslog (RFC 5424) over TCP with octet counting (RFC 6587), TLS
(RFC 5425) when configured.

The exporter reads the audit table after a cursor it keeps in a file (written atomically), so
an unreachable repository loses nothing: it sends from the cursor once the repository is back.
Delivery is at least once: a crash between sending and saving the cursor sends a batch again.
"""

from __future__ import annotations

import base64
import logging
import os
import select
import socket
import ssl
import threading
from datetime import UTC
from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree as ET

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from infernode.audit import AuditLog, AuditRecord
from infernode.settings import SyslogConfig

log = logging.getLogger(__name__)

FACILITY_AUTHPRIV = 10
"""security/authorization messages (RFC 5424 Table 1), as ATNA asks."""
SEVERITY_NOTICE = 5
SEVERITY_WARNING = 4
MSGID = "IHE+RFC-3881"
BOM = "\ufeff"


class Code(NamedTuple):
    """A coded value of the audit message schema (csd-code, codeSystemName, originalText)."""

    value: str
    scheme: str
    meaning: str


def dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


# PS3.16 CID 400 (event ID), CID 401 (event type), CID 402 (role), CID 404 (object ID type)
APPLICATION_ACTIVITY = dcm("110100", "Application Activity")
INSTANCES_ACCESSED = dcm("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = dcm("110104", "DICOM Instances Transferred")
PATIENT_RECORD = dcm("110110", "Patient Record")
QUERY = dcm("110112", "Query")
SECURITY_ALERT = dcm("110113", "Security Alert")
USER_AUTHENTICATION = dcm("110114", "User Authentication")
APPLICATION_START = dcm("110120", "Application Start")
APPLICATION_STOP = dcm("110121", "Application Stop")
LOGIN = dcm("110122", "Login")
LOGOUT = dcm("110123", "Logout")
NODE_AUTHENTICATION = dcm("110126", "Node Authentication")
SOFTWARE_CONFIGURATION = dcm("110131", "Software Configuration")
RESTRICTED_FUNCTION = dcm("110132", "Use of Restricted Function")
APPLICATION = dcm("110150", "Application")
DESTINATION = dcm("110152", "Destination Role ID")
SOURCE = dcm("110153", "Source Role ID")
STUDY_UID = dcm("110180", "Study Instance UID")
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
SEARCH_CRITERIA = Code("10", "RFC-3881", "Search Criteria")
APPLICATION_SERVER = Code("4", "DCM", "Application Server")  # RFC 3881 audit source type 4


class Event(NamedTuple):
    event_id: Code
    action: str  # C create, R read, U update, D delete, E execute
    type_code: Code | None = None


def classify(record: AuditRecord) -> Event:
    """The A.5 event of an audit row, by its category and action."""
    category, action = record.category, record.action
    if category == "association":
        return (Event(USER_AUTHENTICATION, "E", LOGIN) if action == "accepted"
                else Event(SECURITY_ALERT, "E", NODE_AUTHENTICATION))
    if category == "instances":
        return Event(INSTANCES_TRANSFERRED, "C")
    if category in ("routing", "job"):
        return Event(INSTANCES_ACCESSED, "R")
    if category == "delivery":
        return Event(INSTANCES_TRANSFERRED, "R")
    if category == "fhir_read":
        return Event(QUERY, "E") if action == "search" else Event(PATIENT_RECORD, "R")
    if category == "login":
        return Event(USER_AUTHENTICATION, "E", LOGOUT if action == "logout" else LOGIN)
    if category == "config":
        return Event(SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION)
    if category == "application":
        return Event(APPLICATION_ACTIVITY, "E",
                     APPLICATION_STOP if action == "stop" else APPLICATION_START)
    return Event(SECURITY_ALERT, "E", RESTRICTED_FUNCTION)


def _code(parent: ET.Element, tag: str, code: Code) -> None:
    ET.SubElement(parent, tag, {"csd-code": code.value, "codeSystemName": code.scheme,
                                "originalText": code.meaning})


def _participant(parent: ET.Element, user: str, *, requestor: bool, role: Code | None,
                 address: str | None = None) -> None:
    attrs = {"UserID": user or "unknown", "UserIsRequestor": "true" if requestor else "false"}
    if address:
        attrs["NetworkAccessPointID"] = address
        attrs["NetworkAccessPointTypeCode"] = "2"  # IP address
    element = ET.SubElement(parent, "ActiveParticipant", attrs)
    if role is not None:
        _code(element, "RoleIDCode", role)


def to_dicom_xml(record: AuditRecord, *, source_id: str, site_id: str | None = None) -> str:
    """The audit row as a DICOM audit message (PS3.15 A.5.1): EventIdentification,
    ActiveParticipant (who asked, and this node), AuditSourceIdentification and
    ParticipantObjectIdentification (the study or the patient concerned)."""
    event = classify(record)
    root = ET.Element("AuditMessage")
    ident = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": event.action,
        "EventDateTime": record.at.astimezone(UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "EventOutcomeIndicator": "0" if record.outcome == "success" else "4",
    })
    _code(ident, "EventID", event.event_id)
    if event.type_code is not None:
        _code(ident, "EventTypeCode", event.type_code)
    reason = record.detail.get("reason")
    if record.outcome != "success" and reason:
        ET.SubElement(ident, "EventOutcomeDescription").text = str(reason)
    _participants(root, record, source_id)
    source = ET.SubElement(root, "AuditSourceIdentification",
                           {"AuditSourceID": source_id,
                            **({"AuditEnterpriseSiteID": site_id} if site_id else {})})
    _code(source, "AuditSourceTypeCode", APPLICATION_SERVER)
    _objects(root, record)
    return ET.tostring(root, encoding="unicode", xml_declaration=False)


def _participants(root: ET.Element, record: AuditRecord, node: str) -> None:
    actor, address = record.actor or "unknown", record.source
    if record.category in ("association", "instances"):
        _participant(root, actor, requestor=True, role=SOURCE, address=address)
        _participant(root, node, requestor=False, role=DESTINATION)
    elif record.category == "delivery":
        _participant(root, node, requestor=True, role=SOURCE)
        _participant(root, actor, requestor=False, role=DESTINATION)
    elif record.category in ("routing", "job", "config", "application"):
        _participant(root, node if record.category != "job" else actor, requestor=True,
                     role=APPLICATION)
    else:  # fhir_read, login, console: a user or token asked the node
        _participant(root, actor, requestor=True, role=None, address=address)
        _participant(root, node, requestor=False, role=APPLICATION)


def _objects(root: ET.Element, record: AuditRecord) -> None:
    subject = record.subject
    if subject and subject.startswith("Patient/"):
        element = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": subject.split("/", 1)[1],
            "ParticipantObjectTypeCode": "1", "ParticipantObjectTypeCodeRole": "1"})
        _code(element, "ParticipantObjectIDTypeCode", PATIENT_NUMBER)
    elif subject and record.category in ("instances", "routing", "job", "delivery"):
        element = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": subject, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _code(element, "ParticipantObjectIDTypeCode", STUDY_UID)
        ET.SubElement(element, "ParticipantObjectDescription").text = _description(record)
    if record.category == "fhir_read" and record.action == "search":
        # the search as asked, base64 (A.5.1 ParticipantObjectQuery), role 24: query
        resource_type = str(record.detail.get("resource_type") or "-")
        element = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": resource_type, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "24"})
        _code(element, "ParticipantObjectIDTypeCode", SEARCH_CRITERIA)
        ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(
            f"{resource_type}?{record.detail.get('query') or ''}".encode()).decode()


def _description(record: AuditRecord) -> str:
    d = record.detail
    if record.category == "instances":
        return f"{d.get('count', 0)} instances received"
    if record.category == "job":
        return f"{d.get('pipeline')} {d.get('state')}"
    if record.category == "delivery":
        return f"{d.get('kind')} to {d.get('destination')}: {d.get('state')}"
    return f"{d.get('series', 0)} series routed"


def syslog_frame(record: AuditRecord, xml: str, *, hostname: str, app_name: str) -> bytes:
    """One RFC 5424 message, octet-counted (RFC 6587 3.4.1): `LEN SP <PRI>1 TIMESTAMP
    HOSTNAME APP-NAME PROCID MSGID - BOM XML`."""
    severity = SEVERITY_NOTICE if record.outcome == "success" else SEVERITY_WARNING
    stamp = record.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    header = (f"<{FACILITY_AUTHPRIV * 8 + severity}>1 {stamp} {_token(hostname, 255)} "
              f"{_token(app_name, 48)} {os.getpid()} {MSGID} - ")
    message = (header + BOM + xml).encode("utf-8")
    return f"{len(message)} ".encode() + message


def _token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces (RFC 5424 6.2), or NILVALUE."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


class AuditExporter:
    """Sends audit rows after its cursor to the repository, batch by batch; saves the
    cursor after each batch was written to the connection."""

    def __init__(self, log_: AuditLog, cfg: SyslogConfig, cursor_path: Path, *,
                 registry: CollectorRegistry | None = None, source_id: str | None = None
                 ) -> None:
        self._log = log_
        self._cfg = cfg
        self._cursor_path = Path(cursor_path)
        self._hostname = socket.gethostname()
        self._source_id = source_id or f"{cfg.app_name}@{self._hostname}"
        self._sock: socket.socket | None = None
        self.sent = Counter("infernode_audit_export_sent", "Audit messages sent to the "
                            "audit repository", registry=registry)
        self.failures = Counter("infernode_audit_export_failures",
                                "Failed tries to reach the audit repository", registry=registry)
        self.cursor_gauge = Gauge("infernode_audit_export_cursor",
                                  "Id of the last audit event sent", registry=registry)

    def cursor(self) -> int:
        try:
            return int(self._cursor_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _save(self, value: int) -> None:
        self._cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cursor_path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            handle.write(f"{value}\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self._cursor_path)
        self.cursor_gauge.set(value)

    def send_pending(self) -> int:
        """Sends every row after the cursor; returns how many. Raises OSError when the
        repository cannot be reached (the cursor stays where it was)."""
        total = 0
        while True:
            records = self._log.query(after_id=self.cursor(), limit=self._cfg.batch)
            if not records:
                return total
            sock = self._connection()
            payload = b"".join(
                syslog_frame(r, to_dicom_xml(r, source_id=self._source_id,
                                             site_id=self._cfg.enterprise_site_id),
                             hostname=self._hostname, app_name=self._cfg.app_name)
                for r in records)
            try:
                sock.sendall(payload)
            except OSError:
                self.close()
                raise
            self._save(records[-1].id)
            self.sent.inc(len(records))
            total += len(records)

    def run(self, stop: threading.Event) -> None:
        wait = self._cfg.poll_s
        while not stop.is_set():
            try:
                self.send_pending()
                wait = self._cfg.poll_s
            except (OSError, SQLAlchemyError) as exc:
                self.failures.inc()
                log.warning("audit export to %s:%d: %s", self._cfg.host, self._cfg.port,
                            type(exc).__name__)
                wait = min(max(wait * 2, 1.0), self._cfg.retry_max_s)
            stop.wait(wait)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _connection(self) -> socket.socket:
        if self._sock is not None and not _still_open(self._sock):
            self.close()
        if self._sock is None:
            cfg = self._cfg
            raw = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout_s)
            if cfg.tls:
                context = ssl.create_default_context(
                    cafile=str(cfg.ca_file) if cfg.ca_file else None)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                if cfg.cert_file is not None:
                    context.load_cert_chain(str(cfg.cert_file),
                                            str(cfg.key_file) if cfg.key_file else None)
                try:
                    self._sock = context.wrap_socket(raw, server_hostname=cfg.host)
                except (OSError, ssl.SSLError):
                    raw.close()
                    raise
            else:
                self._sock = raw
        return self._sock


def _still_open(sock: socket.socket) -> bool:
    """False once the repository closed its side (a stopped syslog server), so the next batch
    goes to a new connection instead of into a socket that will be reset. A repository sends
    nothing on its own: anything readable is an end (EOF, a reset or a TLS close_notify)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    if not readable:
        return True
    if isinstance(sock, ssl.SSLSocket):
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False
