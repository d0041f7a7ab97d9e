"""Extra acceptor processes (`dicom.acceptor_processes` > 1): receiving in more than one process.

The receive path's Python work holds one interpreter lock per process, so one process receives
on one core however many associations are open. With N > 1 the node's own process keeps its
listener and starts N-1 child processes (multiprocessing "spawn": the node has threads, never
fork them) that each run only a DICOM listener on the same host:port, every listener with
SO_REUSEPORT: the kernel spreads new associations among them. A child has its own database
engine, index store, ingestor, spool slot folder (`.slots/<k>/`), Storage SCP and audit recorder
for its associations and instances; study assembly, workers, web and retention stay in the
node's process, which finds what the children indexed in the database (assembly polls it).

`AcceptorSupervisor` (in the node's process) starts the children once the node's own listener is
bound, restarts one that dies, and at stop sends them SIGTERM (each stops its listener with
`stop_grace_s`, then exits) and kills those still running after the grace.

Metrics: a child writes a snapshot of its `IngestMetrics` and of its audit recorder's
`AuditMetrics` every METRICS_INTERVAL_S (and when it stops) to `<spool>/.acceptors/<k>-<pid>.json`
(written beside, then renamed: a reader never sees half a file); the node's process reads them
at each scrape (`ChildMetrics`) and exports them with its own, labelled `acceptor="k"`. A
restarted child starts from zero: the counters of the incarnations before it are added into
`<k>-base.json`, so that a counter of process k only grows (what a kill -9 takes is at most the
last interval). Gauges (open associations, pending connections, audit queue depth) come from the
running incarnation only. Files of another node process (an earlier run) are ignored and removed
when the supervisor starts.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from dicom_node.assembly import utc_now
from dicom_node.config import DicomNodeConfig
from dicom_node.events import SeriesSummary
from dicom_node.index.headers import InstanceHeader
from dicom_node.index.store import IndexStore
from dicom_node.ingest import Ingestor
from dicom_node.metrics import IngestMetrics, ProcessMetrics, Sample
from dicom_node.scp.server import DicomServer
from dicom_node.scp.storage import StorageSCP
from dicom_node.spool import Spool
from infernode.audit import AuditEvent, AuditLog
from infernode.audit_hooks import AssociationAudit, AuditMetrics, AuditRecorder
from infernode.db import create_engine
from infernode.settings import Settings
from infernode.wiring import workers_config
from workers.routing import quiet_period_s

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
"""At least this long between two starts of the same acceptor process (a child that dies at
once is not restarted in a tight loop)."""

METRICS_INTERVAL_S = 1.0
"""How often an acceptor process writes its metrics snapshot for the node's process."""

METRICS_FOLDER = ".acceptors"
"""The acceptor processes' metrics snapshots, under the spool root."""

_FILES = threading.Lock()  # the node's process: readers and the supervisor's clean-up


def quiet_period_function(settings: Settings) -> Callable[[InstanceHeader], float]:
    """The ingestor's quiet period of a received instance: the longest quiet period of the
    routing rules that could still route its series (the node's process and every acceptor
    process use this one function)."""
    wcfg = workers_config(settings)

    @functools.lru_cache(maxsize=4096)
    def series_quiet_period(series_instance_uid: str, modality: str | None,
                            body_part_examined: str | None, series_description: str | None,
                            protocol_name: str | None, image_type: tuple[str, ...],
                            sop_class_uid: str, slice_thickness: float | None) -> float:
        # The longest quiet period of the rules that could still route this series, judged
        # on its first instances (count conditions see the count so far).
        summary = SeriesSummary(
            series_instance_uid=series_instance_uid, modality=modality,
            body_part_examined=body_part_examined, series_description=series_description,
            protocol_name=protocol_name, image_type=image_type,
            sop_class_uids=(sop_class_uid,), instance_count=1,
            slice_thickness=slice_thickness, calling_ae=None, called_ae=None,
        )
        return quiet_period_s(summary, wcfg.rules, wcfg.exclusions,
                              settings.dicom.quiet_period_s)

    def quiet_period(header: InstanceHeader) -> float:
        # Asked for every received instance; the answer depends only on these header
        # values and the (fixed) rules, so the instances of a series after the first are
        # answered from the cache instead of evaluating every rule again.
        return series_quiet_period(
            header.series_instance_uid, header.modality, header.body_part_examined,
            header.series_description, header.protocol_name, header.image_type,
            header.sop_class_uid, header.slice_thickness)

    return quiet_period


def receive_path(settings: Settings, engine: Engine, metrics: IngestMetrics,
                 associations: AssociationAudit, *, config: DicomNodeConfig | None = None,
                 acceptor: int = 0, audit_metrics: AuditMetrics | None = None,
                 ) -> tuple[Ingestor, DicomServer]:
    """The receive path of one process, the node's (`acceptor` 0) or an acceptor child's:
    spool (with this process's slot folder), index store, ingestor, Storage SCP and listener on
    `config` (default `settings.dicom`), audited by `associations`. The spool and index are the
    ingestor's. In the node's process with acceptor processes configured, `metrics` and
    `audit_metrics` (the audit recorder's) export the children's metrics too (`ChildMetrics`)."""
    config = settings.dicom if config is None else config
    if acceptor == 0 and config.acceptor_processes > 1:
        children = ChildMetrics(metrics_folder(config.spool_dir))
        metrics.add_peers(children)
        if audit_metrics is not None:
            audit_metrics.add_peers(children)
    spool = Spool(config.spool_dir, config.min_free_bytes, slot_folder=slot_folder(acceptor),
                  drop_cache=config.spool_drop_cache)
    ingestor = Ingestor(spool, IndexStore(engine), quiet_period=quiet_period_function(settings),
                        clock=utc_now, metrics=metrics,
                        max_inflated_bytes=config.max_inflated_bytes)
    server = DicomServer(config, StorageSCP(ingestor, on_stored=associations.on_stored),
                         metrics=metrics, on_association=associations.on_association)
    return ingestor, server


def tagged(submit: Callable[[AuditEvent], None], acceptor: int) -> Callable[[AuditEvent], None]:
    """`submit` with the acceptor process's number added to each event's detail (0: the node's
    own process), so that the audit trail tells which process received an association."""
    def submit_tagged(event: AuditEvent) -> None:
        submit(replace(event, detail={**event.detail, "acceptor": acceptor}))
    return submit_tagged


def slot_folder(acceptor: int) -> str:
    """The spool slot folder of acceptor process `acceptor` (0: the node's own process)."""
    return ".slots" if acceptor == 0 else f".slots/{acceptor}"


def metrics_folder(spool_dir: Path | str) -> Path:
    """Where acceptor processes write their metrics snapshots."""
    return Path(spool_dir) / METRICS_FOLDER


def write_metrics(folder: Path, acceptor: int, started: float,
                  *metrics: ProcessMetrics) -> None:
    """An acceptor process's snapshot of each of `metrics` (its ingest and audit metrics), in
    one file, for the node's process (`ChildMetrics`)."""
    pid = os.getpid()
    record = {"parent": os.getppid(), "pid": pid, "acceptor": acceptor, "started": started,
              "samples": [sample for m in metrics for sample in m.snapshot()]}
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{acceptor}-{pid}.tmp"
    partial.write_text(json.dumps(record))
    os.replace(partial, folder / f"{acceptor}-{pid}.json")


class ChildMetrics:
    """In the node's process: the acceptor processes' latest snapshots, by acceptor label
    (a `ProcessMetrics.add_peers` source; the ingest and the audit metrics share one, each
    taking its own families from the snapshots). Per acceptor process, counters and histograms are
    its base (earlier incarnations, folded here when a newer one has written) plus its newest
    incarnation's; gauges are the newest incarnation's while it runs."""

    def __init__(self, folder: Path, parent: int | None = None) -> None:
        self.folder = folder
        self.parent = os.getpid() if parent is None else parent

    def __call__(self) -> dict[str, list[Sample]]:
        with _FILES:
            records: dict[int, list[dict[str, Any]]] = {}
            for record in self._records():
                records.setdefault(int(record["acceptor"]), []).append(record)
            return {str(k): self._combined(k, found) for k, found in sorted(records.items())}

    def _records(self) -> Iterable[dict[str, Any]]:
        try:
            paths = sorted(self.folder.glob("*.json"))
        except OSError:
            return
        for path in paths:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # removed meanwhile (folded), or not one of ours
            if isinstance(record, dict) and record.get("parent") == self.parent:
                record["path"] = path
                yield record

    def _combined(self, acceptor: int, found: list[dict[str, Any]]) -> list[Sample]:
        base = [r for r in found if r.get("pid") is None]
        running = sorted((r for r in found if r.get("pid") is not None),
                         key=lambda r: float(r["started"]))
        totals = _additive(r["samples"] for r in base)
        if len(running) > 1:
            # Earlier incarnations of this process have ended: their counters go to its base,
            # so that no file is read twice and their number stays bounded.
            totals = _additive([totals, *(r["samples"] for r in running[:-1])])
            self._write_base(acceptor, totals)
            for old in running[:-1]:
                Path(old["path"]).unlink(missing_ok=True)
        samples = totals
        if running:
            newest = running[-1]
            samples = _additive([totals, newest["samples"]])
            if _alive(int(newest["pid"])):
                samples += [s for s in map(_sample, newest["samples"]) if s[1] == "gauge"]
        return samples

    def _write_base(self, acceptor: int, samples: list[Sample]) -> None:
        record = {"parent": self.parent, "pid": None, "acceptor": acceptor, "samples": samples}
        partial = self.folder / f".{acceptor}-base.tmp"
        partial.write_text(json.dumps(record))
        os.replace(partial, self.folder / f"{acceptor}-base.json")

    def clear(self) -> None:
        """Removes every snapshot (at the supervisor's start: none of them is this run's)."""
        with _FILES:
            for path in [*self.folder.glob("*.json"), *self.folder.glob(".*.tmp")]:
                path.unlink(missing_ok=True)


def _sample(raw: Any) -> Sample:
    family, kind, name, labels, value = raw
    return str(family), str(kind), str(name), {str(k): str(v) for k, v in labels.items()}, \
        float(value)


def _additive(snapshots: Iterable[Iterable[Any]]) -> list[Sample]:
    """The sum, sample by sample, of the counters and histograms of `snapshots`."""
    total: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], float] = {}
    for snapshot in snapshots:
        for family, kind, name, labels, value in map(_sample, snapshot):
            if kind != "gauge":
                key = (family, kind, name, tuple(sorted(labels.items())))
                total[key] = total.get(key, 0.0) + value
    return [(family, kind, name, dict(labels), value)
            for (family, kind, name, labels), value in total.items()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_acceptor(settings: Settings, acceptor: int, port: int) -> None:
    """A child process's main: a DICOM listener on `port` (the node's, bound already) until
    SIGTERM or until the node's process is gone."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    from infernode.logs import install

    install()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node's process decides (Ctrl-C)
    parent = os.getppid()
    config = settings.dicom.model_copy(update={"port": port})
    engine = create_engine(settings.database.url)  # migrated by the node's process
    registry = CollectorRegistry()  # not exported: the node's process exports the snapshots
    metrics = IngestMetrics(registry)
    audit_metrics = AuditMetrics(registry)
    recorder = AuditRecorder(AuditLog(engine), audit_metrics, capacity=settings.audit.queue_size)
    audit = AssociationAudit(tagged(recorder.submit, acceptor), config.ae_title)
    ingestor, server = receive_path(settings, engine, metrics, audit, config=config,
                                    acceptor=acceptor)
    recorder.start()
    ingestor.spool.prepare()
    freeze_start_up_heap()
    server.start()
    log.info("acceptor process %d listening port=%d pid=%d", acceptor, port, os.getpid())
    folder, started = metrics_folder(config.spool_dir), time.time()
    written = 0.0
    while not stop.wait(0.2):
        if os.getppid() != parent:
            log.warning("acceptor process %d: the node's process is gone, stopping", acceptor)
            break
        if time.monotonic() - written >= METRICS_INTERVAL_S:
            _write_quietly(folder, acceptor, started, metrics, audit_metrics)
            written = time.monotonic()
    server.stop()
    ingestor.spool.close()
    # The last counts before the audit's drain (which may take up to its timeout, and the node
    # kills a child still running stop_grace_s + 2 s after SIGTERM), and again after it.
    _write_quietly(folder, acceptor, started, metrics, audit_metrics)
    audit.flush()
    recorder.stop(timeout=5.0)
    _write_quietly(folder, acceptor, started, metrics, audit_metrics)
    engine.dispose()
    log.info("acceptor process %d stopped", acceptor)


def freeze_start_up_heap() -> None:
    """Moves every object alive now to the cyclic collector's permanent generation
    (`gc.freeze`): what start-up built (modules, pydicom's dictionaries, highdicom's tables of
    the standard that an embedded runner loads, about 300 000 objects, caches) lives as long as
    the process, and each full collection would otherwise walk all of it on the threads that
    receive (about a fifth of the node's CPU samples with four associations; BENCHMARKS.md,
    round 6). Objects made later are collected as usual."""
    gc.collect()  # start-up garbage is freed, not frozen
    gc.freeze()


def _write_quietly(folder: Path, acceptor: int, started: float,
                   *metrics: ProcessMetrics) -> None:
    try:
        write_metrics(folder, acceptor, started, *metrics)
    except OSError as exc:  # metrics must never stop the receiving
        log.warning("acceptor process %d: metrics not written: %s", acceptor,
                    exc.strerror or type(exc).__name__)


class AcceptorSupervisor:
    """Starts acceptor processes 1..count-1 on `port`, restarts one that dies, stops them."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.count = settings.dicom.acceptor_processes
        self._context = multiprocessing.get_context("spawn")
        self._children: dict[int, BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ChildMetrics(metrics_folder(self.settings.dicom.spool_dir)).clear()
        for k in range(1, self.count):
            self._spawn(k)
        self._thread = threading.Thread(target=self._watch, name="acceptors", daemon=True)
        self._thread.start()

    def pids(self) -> dict[int, int | None]:
        with self._lock:
            return {k: p.pid for k, p in self._children.items()}

    def _spawn(self, k: int) -> None:
        process = self._context.Process(target=run_acceptor, args=(self.settings, k, self.port),
                                        name=f"infernode-acceptor-{k}", daemon=False)
        process.start()
        with self._lock:
            self._children[k] = process
            self._started[k] = time.monotonic()
        log.info("acceptor process %d started pid=%s", k, process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                dead = [(k, p) for k, p in self._children.items() if not p.is_alive()]
            for k, process in dead:
                if self._stopping.is_set():
                    return
                if time.monotonic() - self._started[k] < RESTART_DELAY_S:
                    continue
                log.error("acceptor process %d exited (code %s), restarting", k,
                          process.exitcode)
                process.close()
                self._spawn(k)

    def stop(self) -> None:
        """SIGTERM to every child: each stops its listener with `stop_grace_s`, then exits.
        Returns at once; `join` waits for them."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            children = list(self._children.values())
        for process in children:
            if process.is_alive():
                process.terminate()

    def join(self, timeout: float) -> None:
        """Waits up to `timeout` for the children stopped by `stop`, then kills the rest."""
        deadline = time.monotonic() + timeout
        with self._lock:
            children = list(self._children.values())
        for process in children:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in children:
            if process.is_alive():
                log.error("acceptor process pid=%s did not stop in time, killing", process.pid)
                process.kill()
                process.join(timeout=2)
