"""Inbound HL7 v2 listener over MLLP (HL7 v2.5.1 Appendix C, MLLP release 2): receives final
reports (ORU^R01) and answers each message with an original-mode ACK (v2.5.1 2.9.2):

- AA: the message was read and handed on (a report that is not final is read and ignored);
- AR: the message is not one the node takes (not an ORU^R01, no MSH, no OBR): ERR-3 from table
  0357 (200 unsupported message type, 100 segment sequence error, 101 required field missing);
- AE: the report was read but could not be recorded (ERR-3 207, application internal error);
  the sender retries it.

Reading is tolerant (any version, the message's own delimiters); nothing of the message is
logged except its control id.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from hl7_fhir.hl7v2.ack import build_ack
from hl7_fhir.hl7v2.mllp import END_BLOCK, START_BLOCK
from hl7_fhir.labels import FinalReport

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 << 20
FINAL_STATUSES = frozenset({"F", "C"})  # table 0123: final, corrected
TEXT_TYPES = frozenset({"TX", "FT", "ST"})
CODED_TYPES = frozenset({"CE", "CWE", "CNE"})
_V2_SYSTEMS = {"SCT": "http://snomed.info/sct", "LN": "http://loinc.org",
               "I10": "http://hl7.org/fhir/sid/icd-10"}


class MessageRejected(ValueError):
    """The message is not one the listener takes; `code` is its ERR-3 (table 0357)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class _Delimiters:
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str


def _unescape(value: str, d: _Delimiters) -> str:
    if d.escape not in value:
        return value
    table = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition,
             "E": d.escape, ".br": "\n"}
    parts = value.split(d.escape)
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        out.append(table.get(parts[i], ""))
        if i + 1 < len(parts):
            out.append(parts[i + 1])
    return "".join(out)


def _segments(text: str) -> tuple[list[list[str]], _Delimiters]:
    segments = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
                if s.strip()]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise MessageRejected("no MSH segment", "100")
    msh = segments[0]
    enc = msh[4:8]
    d = _Delimiters(msh[3], enc[0], enc[1], enc[2], enc[3] if len(enc) > 3 else "&")
    fields = [s.split(d.field) for s in segments]
    # MSH-1 is the field separator itself: shift so that fields[0][n] is MSH-n
    fields[0] = ["MSH", d.field, *fields[0][1:]]
    return fields, d


def _get(segment: list[str], index: int) -> str:
    return segment[index] if index < len(segment) else ""


def parse_oru(text: str) -> FinalReport:
    """The final report in an ORU^R01: accession from OBR-3 (filler order number, else
    OBR-18), status OBR-25, time OBR-22, text from TX/FT/ST OBX values, codes from coded OBX
    values.

    Raises:
        MessageRejected: not an ORU^R01, or no OBR with an order number.
    """
    segs, d = _segments(text)
    msh = segs[0]
    kind = _get(msh, 9).split(d.component)
    if kind[:2] != ["ORU", "R01"]:
        raise MessageRejected(f"unsupported message type {'^'.join(kind[:2])}", "200")
    obr = next((s for s in segs if s[0] == "OBR"), None)
    if obr is None:
        raise MessageRejected("ORU without OBR", "100")
    accession = _unescape(_get(obr, 3).split(d.component)[0], d) or _unescape(
        _get(obr, 18).split(d.component)[0], d)
    if not accession:
        raise MessageRejected("OBR-3 / OBR-18 (accession) missing", "101")
    service = _get(obr, 4).split(d.component)[0]
    texts: list[str] = []
    codes: list[tuple[str, str]] = []
    for seg in segs:
        if seg[0] != "OBX":
            continue
        value_type = _get(seg, 2)
        for value in _get(seg, 5).split(d.repetition):
            if value_type in TEXT_TYPES:
                texts.append(_unescape(value, d))
            elif value_type in CODED_TYPES:
                parts = value.split(d.component) + ["", "", ""]
                if parts[0]:
                    codes.append((_V2_SYSTEMS.get(parts[2], parts[2]), _unescape(parts[0], d)))
    return FinalReport(source="hl7", report_id=f"{accession}|{service}", accession=accession,
                       text="\n".join(texts), codes=tuple(codes),
                       reported_at=_time(_get(obr, 22)), status=_get(obr, 25) or "F")


def _time(value: str) -> datetime | None:
    digits = value[:14]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(digits, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


ReportHandler = Callable[[FinalReport], None]


def handle_message(text: str, on_report: ReportHandler, clock: Callable[[], datetime],
                   control_id: Callable[[], str]) -> str:
    """The ACK for one inbound message, after handing a final report to `on_report`."""
    try:
        report = parse_oru(text)
    except MessageRejected as exc:
        log.info("HL7 message rejected (%s)", exc.code)
        return build_ack(text, "AR", clock(), control_id(), exc.code)
    if report.status in FINAL_STATUSES:
        try:
            on_report(report)
        except Exception:  # noqa: BLE001 - any failure to record is answered AE, sender retries
            log.exception("final report could not be recorded")
            return build_ack(text, "AE", clock(), control_id(), "207")
    return build_ack(text, "AA", clock(), control_id())


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        allowed = self.server.allowed_hosts
        if allowed and self.client_address[0].removeprefix("::ffff:") not in allowed:
            log.info("MLLP connection from a host not allowed; closed")
            return
        sock.settimeout(self.server.idle_timeout_s)
        if self.server.ssl_context is not None:
            try:
                sock = self.server.ssl_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("MLLP TLS handshake failed (%s); closed", type(exc).__name__)
                return
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > MAX_MESSAGE_BYTES:
                log.info("MLLP frame over %d bytes; connection closed", MAX_MESSAGE_BYTES)
                return
            while END_BLOCK in buffer:
                block, buffer = buffer.split(END_BLOCK, 1)
                start = block.find(START_BLOCK)
                if start < 0:
                    continue
                text = block[start + 1:].decode("utf-8", errors="replace")
                try:
                    ack = handle_message(text, self.server.on_report, self.server.clock,
                                         self.server.next_control_id)
                except ValueError:
                    continue  # no MSH to acknowledge
                sock.sendall(START_BLOCK + ack.encode("utf-8") + END_BLOCK)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], on_report: ReportHandler,
                 clock: Callable[[], datetime], idle_timeout_s: float,
                 allowed_hosts: frozenset[str], ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(address, _Handler)
        self.allowed_hosts = allowed_hosts
        self.ssl_context = ssl_context
        self.on_report = on_report
        self.clock = clock
        self.idle_timeout_s = idle_timeout_s
        self._counter = 0
        self._lock = threading.Lock()

    def next_control_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"IN{self.clock():%Y%m%d%H%M%S}{self._counter:06d}"[:20]


class MllpListener:
    """A threaded MLLP listener; `start()` binds and returns the port. With `allowed_hosts`
    (IP addresses), a connection from any other address is closed unanswered; with
    `ssl_context` (`mllp.server_tls_context`), every connection is TLS: the handshake runs in
    the connection's own thread under `idle_timeout_s`, and one that fails is closed."""

    def __init__(self, host: str, port: int, on_report: ReportHandler, *,
                 clock: Callable[[], datetime] | None = None,
                 idle_timeout_s: float = 300.0, allowed_hosts: Iterable[str] = (),
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = _Server((host, port), on_report, clock or (lambda: datetime.now(UTC)),
                               idle_timeout_s, frozenset(allowed_hosts), ssl_context)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> int:
        self._thread = threading.Thread(target=self._server.serve_forever, name="hl7-listener",
                                        daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
