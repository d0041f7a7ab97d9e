"""Ingest benchmark: images/s received by DCMTK storescp, Orthanc and the node, side by side.

Each receiver runs on loopback (storescp forking per association, Orthanc with its default
SQLite index, two no-op SCPs that store nothing: pynetdicom's and the node's own upper layer
(`dicom_node.scp.upper`), the ceilings of the node's two DICOM stacks, and the node as
`infernode serve` with SQLite, on the upper layer `--node-upper-layer`). DCMTK `storescu` sends
the same generated CT series (512 x 512, 300 slices by default) on 1 and on 4 concurrent
associations, with TCP_NODELAY=1 in the environment of senders and receivers (DCMTK reads it).
Every run gets new Study/Series/SOP Instance UIDs, so no receiver ever sees a duplicate. A run
counts only when the receiver holds every instance afterwards. Prints one JSON line: median
images/s per receiver and association count, the ratios node/storescp and node/orthanc, the
node's four/one scaling, the node's peak RSS (with `--node-processes` N > 1 also each acceptor
process's, and their sum with the node's), each receiver's CPU time per instance (its
processes' user + system time, children included: steadier than images/s on a shared machine),
and the disk's flush latency (median write + fsync of one 0.5 MB file in the receivers' folder).
With `--syscalls`, one more run per receiver under `strace -c` counts the flushes (fsync,
fdatasync, sync_file_range) each receiver makes per instance; those runs are slowed by strace and
not counted in the rates.

    python bench/ingest.py                 # 300 slices, 5 repeats
    python bench/ingest.py --quick         # 60 slices, 2 repeats
    python bench/ingest.py --profile out   # also py-spy the node during its runs (py-spy on PATH)
    python bench/ingest.py --syscalls      # also count each receiver's flushes per instance
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from pydicom.dataset import Dataset
from pydicom.uid import UID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicom_node.synth import SYNTH_UID_ROOT, SeriesSpec, StudyIdentity, volume_series  # noqa: E402
from infernode.local_pacs import launch_orthanc, stop_orthanc  # noqa: E402

DCMTK = Path("/usr/bin")
ORTHANC = Path("/usr/sbin/Orthanc")
CALLING = "INFERNODE_SCU"
TOKEN_DIGITS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_token() -> str:
    """A UID component of fixed width (no leading zero) that makes every UID of a run new."""
    return str(10 ** (TOKEN_DIGITS - 1) + int.from_bytes(os.urandom(5), "big"))[:TOKEN_DIGITS]


def bench_series(slices: int, size: int, token: str) -> Iterator[Dataset]:
    """The generated CT series (a disc of soft tissue with noise), one data set per slice, File
    Meta included; its UIDs all contain `.token.`, so a copy can renew them at the same
    length. bench/ingest_cpu.py feeds the same series to the ingest path in memory."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.42) ** 2) * 40
    root = f"{SYNTH_UID_ROOT}{token}."
    identity = StudyIdentity(study_instance_uid=root + "1", patient_id="BENCH")
    spec = SeriesSpec(series_instance_uid=root + "2")
    for k in range(slices):
        noise = rng.integers(-20, 20, size=(1, size, size))
        [ds] = volume_series((head + noise).astype(np.int16), (1.0, 0.5, 0.5),
                             identity=identity, spec=spec, origin=(0.0, 0.0, float(k)))
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = root + "3"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{root}4.{k + 1}")
        yield ds


def template(folder: Path, slices: int, size: int, token: str) -> list[Path]:
    """Writes the CT series once (`bench_series`)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in bench_series(slices, size, token):
        path = folder / f"{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def fresh_copy(files: Sequence[Path], old: str, folder: Path) -> tuple[list[Path], str]:
    """The series again under new UIDs (same length, so every length field stays right)."""
    token = new_token()
    before, after = f".{old}.".encode(), f".{token}.".encode()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = []
    for path in files:
        target = folder / path.name
        target.write_bytes(path.read_bytes().replace(before, after))
        out.append(target)
    return out, token


class Receiver:
    name = ""
    aet = ""
    port = 0
    pid: int | None = None

    def start(self) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class StoreScp(Receiver):
    """DCMTK storescp writing every instance to a folder, one process per association."""

    name, aet = "storescp", "STORESCP"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()

    def start(self) -> None:
        self.out = self.folder / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(DCMTK / "storescp"), "--fork", "-aet", self.aet, "-od", str(self.out),
             str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        wait_echo(self.port, self.aet)

    def count(self) -> int:
        found = sum(1 for _ in self.out.iterdir())
        shutil.rmtree(self.out)
        self.out.mkdir()
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


class Orthanc(Receiver):
    """Orthanc with its default SQLite index and uncompressed storage."""

    name, aet = "orthanc", "ORTHANC"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.http = free_port(), free_port()

    def start(self) -> None:
        self.process = launch_orthanc(self.folder, {
            "Name": "bench", "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"), "HttpPort": self.http,
            "DicomPort": self.port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "SaveJobs": False,
        }, binary=ORTHANC)
        self.pid = self.process.pid

    def count(self) -> int:
        stats = httpx.get(f"http://127.0.0.1:{self.http}/statistics", timeout=30).json()
        return int(stats["CountInstances"])

    def stop(self) -> None:
        stop_orthanc(self.process)


NOOP_SCP = """
import logging, sys
from pathlib import Path
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import AllStoragePresentationContexts
_config.LOG_HANDLER_LEVEL = "none"
logging.getLogger("pynetdicom").setLevel(logging.WARNING)
count_file, port, aet = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
stored = [0]
def on_store(event):
    stored[0] += 1
    return 0x0000
def on_released(event):
    count_file.write_text(str(stored[0]))
ae = AE(ae_title=aet)
ae.maximum_pdu_size = 262144
ae.supported_contexts = AllStoragePresentationContexts
ae.add_supported_context("1.2.840.10008.1.1")
ae.start_server(("127.0.0.1", port), evt_handlers=[
    (evt.EVT_C_STORE, on_store), (evt.EVT_RELEASED, on_released)])
"""


class NoopScp(Receiver):
    """pynetdicom alone (the node's DICOM stack): an SCP whose C-STORE handler only counts and
    answers Success, storing nothing. Its rate is the ceiling of any receiver built on
    pynetdicom's association and DIMSE layers on this machine."""

    name, aet = "pynetdicom", "NOOPSCP"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.counter = self.folder / "count"
        self.counter.write_text("0")
        self.process = subprocess.Popen(
            [sys.executable, "-c", NOOP_SCP, str(self.counter), str(self.port), self.aet],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        wait_echo(self.port, self.aet, process=self.process)

    def count(self) -> int:
        """Instances answered so far; written when an association is released, which can be
        just after the sender exits: read until the value holds still for 0.3 s."""
        deadline = time.monotonic() + 10
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            found = int(self.counter.read_text() or 0)
            if found != last:
                last, since = found, time.monotonic()
            elif time.monotonic() - since >= 0.3:
                break
            time.sleep(0.05)
        return last

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


NOOP_NATIVE = """
import sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from dicom_node.config import DicomNodeConfig
from dicom_node.scp.access import AccessPolicy
from dicom_node.scp.guard import ConnectionGuard
from dicom_node.scp.server import supported_contexts
from dicom_node.scp.upper import NativeServer
from dicom_node.status import Status
count_file, port, aet = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
stored = [0]
lock = threading.Lock()
class Counter:
    def open_slot(self, request):
        return None  # the data set's fragments are dropped as they arrive
    def store(self, request):
        with lock:
            stored[0] += 1
        return Status.SUCCESS, None
def observe(event):
    if event.kind == "released":
        with lock:
            count_file.write_text(str(stored[0]))
config = DicomNodeConfig(ae_title=aet, port=port, require_known_peers=False)
server = NativeServer(config, Counter(), supported_contexts=supported_contexts(),
                      guard=ConnectionGuard(config), policy=AccessPolicy(config),
                      observer=observe)
server.start()
threading.Event().wait()
"""


class NoopNative(NoopScp):
    """The node's own upper layer (`dicom_node.scp.upper`) alone: every C-STORE is counted and
    answered Success, nothing is stored. Its rate is the ceiling of the node's receive path
    with its own upper layer, as `NoopScp` is with pynetdicom's."""

    name, aet = "native", "NOOPNATIVE"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.counter = self.folder / "count"
        self.counter.write_text("0")
        self.process = subprocess.Popen(
            [sys.executable, "-c", NOOP_NATIVE, str(self.counter), str(self.port), self.aet,
             str(REPO)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.process.pid
        wait_echo(self.port, self.aet, process=self.process)


class Node(Receiver):
    """`infernode serve` with SQLite, no web, no routing rules (no jobs start)."""

    name, aet = "node", "INFERNODE"

    def __init__(self, folder: Path, device: str = "auto", processes: int = 1,
                 upper_layer: str = "native", dicom: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.dicom = dict(dicom or {})  # more `dicom:` settings
        self.device = device
        self.processes = processes
        self.upper_layer = upper_layer
        self.port = free_port()
        self.db = folder / "node.db"
        self.spy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "node.yaml"
        config.write_text(yaml.safe_dump({
            "data_dir": str(self.folder / "data"), "log_level": "WARNING",
            "database": {"url": f"sqlite:///{self.db}"},
            "dicom": {"port": self.port, "spool_dir": str(self.folder / "spool"),
                      "min_free_bytes": 0, "acceptor_processes": self.processes,
                      "upper_layer": self.upper_layer, **self.dicom},
            "web": {"enabled": False}, "workers": {"rules": [], "device": self.device},
        }))
        log = (self.folder / "node.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        wait_echo(self.port, self.aet, process=self.process)

    def start_profile(self, out: Path) -> None:
        self.spy = subprocess.Popen(
            ["py-spy", "record", "--threads", "--nonblocking", "--rate", "250", "--format",
             "raw", "-o", str(out), "--pid", str(self.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def count(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM instances").fetchone()[0])

    def peak_rss_mb(self) -> float:
        return _peak_rss_mb(self.pid)

    def children_peak_rss_mb(self) -> list[float]:
        """Peak RSS of each acceptor process (`--node-processes` > 1), which `peak_rss_mb`
        does not count."""
        found = []
        for child in sorted(running_children(self.pid)):
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"spawn_main" in command:  # an acceptor process (spawned)
                    found.append(_peak_rss_mb(child))
            except OSError:
                continue
        return [round(mb, 1) for mb in found if mb == mb]

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            self.spy.wait(timeout=60)
        if not hasattr(self, "process"):
            return  # never started: another receiver failed first
        self.process.terminate()
        self.process.wait(timeout=60)


def wait_echo(port: int, aet: str, *, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{aet} exited with {process.returncode}")
        done = subprocess.run([str(DCMTK / "echoscu"), "-aet", CALLING, "-aec", aet,
                               "127.0.0.1", str(port)], capture_output=True, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"{aet} does not answer C-ECHO")


def cpu_seconds(pid: int | None) -> float:
    """User + system time of `pid`, of its children it has waited for, and of its children
    still running (the node's acceptor processes) (/proc/PID/stat)."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    for child in running_children(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_seconds() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine so far, all cores (I/O wait counts as
    idle; /proc/stat): what senders, receiver and the kernel's threads took together."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / tick, idle / tick


def running_children(pid: int) -> list[int]:
    """The running child processes of `pid` (started by any of its threads)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def flush_latency_ms(folder: Path, runs: int = 40) -> float:
    """Median time to write and fsync a new 0.5 MB file in `folder` (the disk's flush cost)."""
    folder.mkdir(parents=True, exist_ok=True)
    data, times = os.urandom(1 << 19), []
    for k in range(runs):
        path = folder / f"probe-{k}"
        started = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        times.append(time.perf_counter() - started)
        path.unlink()
    return round(statistics.median(times) * 1000, 2)


FLUSH_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "msync")


def count_flushes(receiver: Receiver, files: Sequence[Path], out: Path) -> dict[str, float]:
    """Sends `files` on one association with `strace -c` attached to the receiver (and the
    processes it forks); returns flush system calls per instance, by call."""
    spy = subprocess.Popen(["strace", "-f", "-qq", "-c", "-o", str(out),
                            "-e", "trace=" + ",".join(FLUSH_CALLS), "-p", str(receiver.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # strace attaches to every thread
    send(receiver, files, 1)
    time.sleep(0.5)
    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=60)
    calls: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in FLUSH_CALLS and len(parts) >= 5:
            calls[parts[-1]] = round(int(parts[3]) / len(files), 2)
    return calls


def send(receiver: Receiver, files: Sequence[Path], associations: int) -> float:
    """Sends `files` on `associations` concurrent storescu processes; returns seconds."""
    chunks = [list(files[i::associations]) for i in range(associations)]
    started = time.perf_counter()
    senders = [subprocess.Popen(
        [str(DCMTK / "storescu"), "-R", "-aet", CALLING, "-aec", receiver.aet,
         "127.0.0.1", str(receiver.port), *map(str, chunk)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for chunk in chunks]
    errors = [p.communicate(timeout=900)[1] for p in senders]
    elapsed = time.perf_counter() - started
    for p, err in zip(senders, errors, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"storescu to {receiver.name} failed: {err.decode()[-500:]}")
    return elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["TCP_NODELAY"] = "1"  # read by DCMTK in storescu, storescp and Orthanc
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=args.tmp))
    token = new_token()
    files = template(work / "template", args.slices, args.size, token)
    node = Node(work / "node", args.node_device, args.node_processes, args.node_upper_layer,
                node_settings(args.node_setting))
    receivers: list[Receiver] = [
        r for r in (StoreScp(work / "storescp"), Orthanc(work / "orthanc"),
                    NoopScp(work / "pynetdicom"), NoopNative(work / "native"), node)
        if r.name in args.receivers]
    rates: dict[str, dict[int, list[float]]] = {
        r.name: {n: [] for n in args.associations} for r in receivers}
    cpu: dict[str, dict[int, list[float]]] = {
        r.name: {n: [] for n in args.associations} for r in receivers}
    idle: dict[str, dict[int, list[float]]] = {
        r.name: {n: [] for n in args.associations} for r in receivers}
    flushes: dict[str, dict[str, float]] = {}
    flush_ms = flush_latency_ms(work / "probe")
    try:
        for r in receivers:
            r.start()
            # one uncounted run: start-up work (imports, caches) out of the measured runs
            copy, _ = fresh_copy(files, token, work / "send")
            send(r, copy, 1)
            r.count()  # storescp: empties its folder
        if args.profile is not None and node in receivers:
            node.start_profile(args.profile)
        for repeat in range(args.repeats):
            for n in args.associations:
                order = receivers[repeat % len(receivers):] + receivers[:repeat % len(receivers)]
                for r in order:
                    copy, _ = fresh_copy(files, token, work / "send")
                    before = r.count() if not isinstance(r, StoreScp) else 0
                    cpu_before = cpu_seconds(r.pid)
                    busy_before, idle_before = machine_seconds()
                    seconds = send(r, copy, n)
                    busy, spare = (a - b for a, b in zip(machine_seconds(),
                                                         (busy_before, idle_before), strict=True))
                    if isinstance(r, StoreScp):
                        time.sleep(0.2)  # storescp reaps its children (their CPU time) late
                    cpu_used = cpu_seconds(r.pid) - cpu_before
                    got = r.count() - before
                    if got != len(copy):
                        raise RuntimeError(f"{r.name} holds {got} of {len(copy)} instances")
                    rates[r.name][n].append(len(copy) / seconds)
                    cpu[r.name][n].append(cpu_used * 1000 / len(copy))
                    idle[r.name][n].append(100 * spare / (busy + spare))
                    print(f"# {r.name} x{n}: {len(copy) / seconds:.1f} images/s",
                          file=sys.stderr, flush=True)
        rss = node.peak_rss_mb() if node in receivers else None
        children_rss = node.children_peak_rss_mb() if node in receivers else []
        if args.syscalls:
            for r in receivers:
                copy, _ = fresh_copy(files, token, work / "send")
                flushes[r.name] = count_flushes(r, copy, work / f"strace-{r.name}.txt")
                r.count()
                print(f"# {r.name} flushes per instance: {flushes[r.name]}", file=sys.stderr)
    finally:
        for r in receivers:
            r.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = summary(args, rates, rss)
    if children_rss:
        result["acceptor_processes_peak_rss_mb"] = children_rss
        if rss is not None:  # every receiving process's peak added up: an upper bound
            result["receiving_side_peak_rss_mb"] = round(rss + sum(children_rss), 1)
    result["cpu_ms_per_instance"] = {
        name: {str(n): round(statistics.median(v), 2) for n, v in per.items() if v}
        for name, per in cpu.items()}
    result["machine_idle_percent"] = {
        name: {str(n): round(statistics.median(v)) for n, v in per.items() if v}
        for name, per in idle.items()}
    result["disk_flush_ms"] = flush_ms
    if flushes:
        result["flushes_per_instance"] = flushes
    return result


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(args: argparse.Namespace, rates: dict[str, dict[int, list[float]]],
            rss: float | None) -> dict[str, Any]:
    median = {name: {str(n): round(statistics.median(v), 1) for n, v in per.items()}
              for name, per in rates.items()}
    ratios: dict[str, float] = {}
    ours = median.get("node", {})
    for other in ("storescp", "orthanc", "pynetdicom", "native"):
        for n, value in ours.items():
            if other in median:
                ratios[f"node/{other}@{n}"] = round(value / median[other][n], 2)
    if "1" in ours and "4" in ours:
        ratios["node@4/node@1"] = round(ours["4"] / ours["1"], 2)
    return {"bench": "ingest", "slices": args.slices, "size": args.size,
            "repeats": args.repeats, "images_per_s": median, "ratios": ratios,
            "node_peak_rss_mb": None if rss is None else round(rss, 1),
            "node_device": args.node_device, "node_processes": args.node_processes,
            "node_upper_layer": args.node_upper_layer,
            "node_settings": node_settings(args.node_setting), "cpus": os.cpu_count()}


def node_settings(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=YAML` items (`--node-setting`) as more `dicom:` settings of the node."""
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)}


def node_setting(item: str) -> str:
    """An argparse type: one `KEY=YAML` item of `--node-setting`."""
    key, sep, _ = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{item!r} is not KEY=YAML")
    return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--associations", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 4])
    parser.add_argument("--receivers", type=lambda s: s.split(","),
                        default=["storescp", "orthanc", "pynetdicom", "native", "node"],
                        help="comma-separated, from storescp, orthanc, pynetdicom, native, "
                             "node; pynetdicom and native are no-op SCPs (the ceiling of each "
                             "upper layer of the node)")
    parser.add_argument("--node-upper-layer", default="native",
                        choices=["native", "pynetdicom"],
                        help="the node's dicom.upper_layer")
    parser.add_argument("--node-device", default="auto", choices=["auto", "cpu"],
                        help="the node's workers.device: auto imports torch into the node "
                             "process when its first job is due, cpu never does")
    parser.add_argument("--node-processes", type=int, default=1,
                        help="the node's dicom.acceptor_processes (processes receiving on its "
                             "port); its CPU time per instance includes theirs")
    parser.add_argument("--node-setting", action="append", default=[], metavar="KEY=YAML",
                        type=node_setting,
                        help="another `dicom:` setting of the node, e.g. spool_drop_cache=false")
    parser.add_argument("--quick", action="store_true", help="60 slices, 2 repeats")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the node")
    parser.add_argument("--syscalls", action="store_true",
                        help="one more run per receiver under strace -c: flushes per instance")
    parser.add_argument("--tmp", type=Path, help="where receivers store (default: TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.repeats = min(args.slices, 60), min(args.repeats, 2)
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
