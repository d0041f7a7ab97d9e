"""CPU per received instance of the node's own receive path, without the network.

Builds a CT series in memory with the project's synth helpers (300 slices of 512 x 512 by
default), then feeds each instance as an `Arrival` straight into an `Ingestor` over a fresh spool
and a fresh SQLite index (migrated), the way the Storage SCP does after the data set's bytes have
arrived: validation and header read, spool slot write and fsync, rename, index row. Every repeat
uses new UIDs (no duplicates). Prints one JSON line: per repeat the CPU milliseconds per instance
of the whole process (every thread: the receiving one, the spool writers, the background thread)
and of the calling (receiving) thread alone, the wall milliseconds per instance, and medians.
With --profile, one more repeat runs under cProfile and its top functions go to stderr.

    .venv/bin/python bench/ingest_cpu.py                  # 300 slices, 5 repeats
    .venv/bin/python bench/ingest_cpu.py --profile 25     # and a cProfile top 25

To compare two versions, run the script of the same content in two worktrees alternately
(`PYTHONPATH=<worktree>`; the script puts its own repository first on the path) and compare the
medians of the same run. A shared machine makes single numbers noisy; process CPU time is
steadier than wall time, and the calling thread's CPU is what holds the interpreter lock.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib.util
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# bench/ holds a module named queue: the script's folder must not shadow the standard library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicom_node.index.store import IndexStore  # noqa: E402
from dicom_node.ingest import Arrival, Ingestor  # noqa: E402
from dicom_node.spool import Spool  # noqa: E402
from infernode.db import create_engine, migrate  # noqa: E402


def _ingest_bench() -> Any:
    """bench/ingest.py, loaded by path (this folder is kept off sys.path: its queue.py would
    hide the standard library's)."""
    spec = importlib.util.spec_from_file_location("bench_ingest", Path(__file__).with_name(
        "ingest.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_INGEST = _ingest_bench()
bench_series, new_token = _INGEST.bench_series, _INGEST.new_token


def template(slices: int, size: int, token: str) -> list[tuple[bytes, str, str, str]]:
    """bench/ingest.py's series as Part 10 bytes (with File Meta, as the SCP hands them on) and
    each instance's SOP Class UID, SOP Instance UID and transfer syntax."""
    out = []
    for ds in bench_series(slices, size, token):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append((buffer.getvalue(), str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                    str(ds.file_meta.TransferSyntaxUID)))
    return out


def renewed(series: Sequence[tuple[bytes, str, str, str]], old: str,
            new: str) -> list[Arrival]:
    before, after = f".{old}.", f".{new}."
    return [
        Arrival(raw=raw.replace(before.encode(), after.encode()), sop_class_uid=sop_class,
                sop_instance_uid=sop_uid.replace(before, after), transfer_syntax_uid=syntax,
                calling_ae="BENCH_SCU", called_ae="INFERNODE", peer_address="127.0.0.1",
                context_sop_class_uid=sop_class)
        for raw, sop_class, sop_uid, syntax in series
    ]


def _same(arrival: Arrival) -> Arrival:
    return arrival


def one_run(arrivals: Sequence[Arrival], folder: Path,
            profiler: cProfile.Profile | None = None) -> dict[str, float]:
    """Ingests `arrivals` into a fresh spool and SQLite index under `folder`."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{folder / 'index.db'}")
    migrate(engine)
    spool = Spool(folder / "spool", 0)
    spool.prepare()
    ingestor = Ingestor(spool, IndexStore(engine), quiet_period=lambda header: 60.0,
                        clock=lambda: datetime.now(UTC))
    # Warm the connection pool and the statement caches outside the measured loop.
    ingestor.index.counts()
    cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for arrival in arrivals:
        ingestor.ingest(functools.partial(_same, arrival), calling_ae=arrival.calling_ae,
                        peer_address=arrival.peer_address,
                        sop_class_uid=arrival.sop_class_uid,
                        sop_instance_uid=arrival.sop_instance_uid)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - wall0
    thread = time.thread_time() - thread0
    spool.flush_dirty()
    cpu = time.process_time() - cpu0
    n = len(arrivals)
    stored = ingestor.index.counts()["instances"]
    if stored != n:
        raise SystemExit(f"{stored} instances indexed, {n} sent")
    engine.dispose()
    return {"cpu_ms": 1000 * cpu / n, "thread_cpu_ms": 1000 * thread / n,
            "wall_ms": 1000 * wall / n}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="one more repeat under cProfile; print its top N functions")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where the spool and index go (default: a temporary folder on "
                             "the disk under /var/tmp, not a memory file system)")
    parser.add_argument("--label", default="", help="copied into the JSON line")
    args = parser.parse_args(argv)

    token = new_token()
    series = template(args.slices, args.size, token)
    base = args.folder or Path(tempfile.mkdtemp(prefix="ingest-cpu-", dir="/var/tmp"))
    runs = []
    try:
        one_run(renewed(series[:20], token, new_token()), base / "warm")  # imports, caches
        for k in range(args.repeats):
            runs.append(one_run(renewed(series, token, new_token()), base / f"run{k}"))
            shutil.rmtree(base / f"run{k}", ignore_errors=True)
        if args.profile:
            profiler = cProfile.Profile()
            one_run(renewed(series, token, new_token()), base / "profile", profiler)
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats(args.profile)
            print(text.getvalue(), file=sys.stderr)
    finally:
        if args.folder is None:
            shutil.rmtree(base, ignore_errors=True)
    result: dict[str, Any] = {
        "label": args.label, "slices": args.slices, "size": args.size,
        "load_average": round(os.getloadavg()[0], 2),
        "median": {key: round(statistics.median(r[key] for r in runs), 3)
                   for key in ("cpu_ms", "thread_cpu_ms", "wall_ms")},
        "runs": [{key: round(value, 3) for key, value in r.items()} for r in runs],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
