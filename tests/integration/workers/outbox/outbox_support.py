"""Helpers of the outbox tests: real loopback peers (an HTTP server with scripted answers, an
MLLP listener that ACKs), a clock the test moves, sample outputs written to disk, and a job
taken through the real job state machine to `succeeded`."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from dicom_node.encode import EncodeContext, Pipeline, encode_outputs
from dicom_node.encode.samples import ct_head_case, sample_algorithm
from dicom_node.encode.samples import fixed_clock as dicom_clock
from hl7_fhir.encode import build_oru, build_report_bundle
from hl7_fhir.samples import fixed_clock, sample_device, sample_findings, sample_study
from tests.support.waiting import wait_until  # noqa: F401 - re-exported to the outbox tests
from workers import samples
from workers.config import WorkersConfig
from workers.jobs import claim, complete
from workers.messages import JobContext, OutputRef, PipelineResult
from workers.submit import on_study_ready


class MovableClock:
    """A clock that only moves when the test says so; it starts at the real time, so what the
    CLI stamps with the real clock lines up with it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


# ---------------------------------------------------------------- HTTP peer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpPeer:
    """Answers each request with the next scripted (status, body), then `default`."""

    port: int = 0
    script: deque[tuple[int, Any]] = field(default_factory=deque)
    default: tuple[int, Any] = (200, {"resourceType": "Bundle", "type": "transaction-response"})
    seen: list[Request] = field(default_factory=list)
    hold: threading.Event | None = None
    """While set to an event, a request is answered only once the event is set (at most 60 s):
    a destination that takes a request and hangs."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts(self, path: str | None = None) -> list[Request]:
        return [r for r in self.seen if r.method == "POST" and (path is None or r.path == path)]


def _handler(peer: HttpPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            peer.seen.append(Request("POST", self.path, dict(self.headers.items()), body))
            hold = peer.hold
            if hold is not None:
                hold.wait(60)
            status, answer = peer.script.popleft() if peer.script else peer.default
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def http_peer() -> Iterator[HttpPeer]:
    peer = HttpPeer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(peer))
    peer.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------- outputs and jobs


@dataclass(frozen=True)
class DicomOutputs:
    study_instance_uid: str
    refs: tuple[OutputRef, ...]


def write_dicom_outputs(folder: Path) -> DicomOutputs:
    """SEG, KOS and SR of the sample head CT with haemorrhage, as Part 10 files."""
    case = ct_head_case()
    study_uid = str(case.sources[0].StudyInstanceUID)
    ctx = EncodeContext.for_job(study_uid, Pipeline.ICH, sample_algorithm("ICH"), dicom_clock())
    encoded = encode_outputs(case.sources, [*case.masks, *case.probabilities], ctx)
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for ds in encoded.datasets():
        path = folder / f"{ds.Modality.lower()}.dcm"
        ds.save_as(path, enforce_file_format=True)
        refs.append(OutputRef(kind="dicom", uid=str(ds.SOPInstanceUID), path=str(path)))
    return DicomOutputs(study_uid, tuple(refs))


def write_bundle(folder: Path, kind: str = "ich") -> OutputRef:
    """The report transaction Bundle of the sample study, as JSON."""
    bundle = build_report_bundle(sample_study(kind), sample_findings(kind), sample_device(),
                                 "Intracranial haemorrhage suspected", fixed_clock())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"report-{kind}.json"
    path.write_text(bundle.model_dump_json(exclude_none=True))
    uid = bundle.identifier.value if bundle.identifier is not None else "bundle"
    return OutputRef(kind="fhir-bundle", uid=str(uid), path=str(path))


def write_oru(folder: Path, control_id: str = "ORU0001") -> OutputRef:
    message = build_oru(sample_study("ich"), sample_findings("ich"), sample_device(),
                        fixed_clock(), control_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{control_id}.hl7"
    path.write_bytes(message.encode("utf-8"))
    return OutputRef(kind="hl7-oru", uid=control_id, path=str(path))


def running_job(engine: Engine, cfg: WorkersConfig, now: datetime, *,
                study_uid: str | None = None, amendment: int = 0) -> JobContext:
    """An `ich` job of a head CT study, routed, queued and claimed through the job layer."""
    study = samples.study(samples.series(), amendment=amendment, study_uid=study_uid,
                          completed_at=now)
    jobs = on_study_ready(engine, cfg, study, clock=lambda: now)
    assert len(jobs) == 1 and jobs[0].pipeline == "ich"
    attempt = claim(engine, cfg, jobs[0].id, "test-worker", "cpu", now)
    assert attempt.context is not None, attempt.reason
    return attempt.context


def succeed(engine: Engine, context: JobContext, now: datetime, outputs: tuple[OutputRef, ...],
            flag: str | None = None) -> None:
    result = PipelineResult(outputs=outputs, priority_flag=flag)
    assert complete(engine, context.job_id, context.attempt, result, now, lambda: now)
