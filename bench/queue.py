"""Queue overhead benchmark: StudyReady -> job start, and job end -> outputs recorded, for the
embedded transport and for Celery over Redis, with the no-op pipeline.

100 studies (default) are submitted by 4 concurrent senders through `on_study_ready`; 2 workers
(2 embedded threads, or 2 Celery worker processes with the solo pool) run them. Every time is
read back from the jobs table, which records each stage.

    python bench/queue.py                        # both modes, SQLite and PostgreSQL
    python bench/queue.py --modes redis --dbs postgresql --studies 200
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

# this file is named like the standard library's `queue`, which Celery imports: take the bench
# folder off the import path before anything imports it
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sqlalchemy import Engine, select, text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers import samples  # noqa: E402
from workers.config import WorkersConfig  # noqa: E402
from workers.db import as_utc, jobs, make_engine, metadata  # noqa: E402
from workers.embedded import EmbeddedRunner  # noqa: E402
from workers.submit import default_transport, on_study_ready  # noqa: E402

LATENCY_STUDIES = 20
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(broker: str | None) -> WorkersConfig:
    return WorkersConfig.model_validate({
        "broker_url": broker, "device": "cpu", "embedded_threads": 2, "embedded_poll_s": 0.05,
        "pipelines": {"noop": {"model_version": "bench-1"}}, "exclusions": [],
        "rules": [{"name": "all-ct", "pipeline": "noop",
                   "when": {"tag": "Modality", "equals": "CT"}}],
    })


def database(kind: str, tmp: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}", lambda: None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    return f"{PG}?options=-csearch_path%3D{schema}", drop


def submit_all(engine: Engine, cfg: WorkersConfig, studies: int, senders: int) -> float:
    transport = default_transport(cfg)
    per_sender = studies // senders

    def send() -> None:
        for _ in range(per_sender):
            on_study_ready(engine, cfg, samples.study(samples.series()), transport=transport)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def wait_done(engine: Engine, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done = conn.execute(select(jobs.c.id).where(jobs.c.state == "succeeded")).all()
        if len(done) >= expected:
            return
        time.sleep(0.01)
    raise RuntimeError("jobs did not finish in time")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def stages(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(jobs)).mappings().all()
    ready = [as_utc(r["study_completed_at"]) for r in rows]
    start = [as_utc(r["started_at"]) for r in rows]
    finish = [as_utc(r["finished_at"]) for r in rows]
    to_start = [(s - c).total_seconds() for s, c in zip(start, ready, strict=True)]  # type: ignore[operator]
    out: dict[str, Any] = {
        "jobs": len(rows),
        "throughput_jobs_per_s": len(rows) / (max(finish) - min(ready)).total_seconds(),  # type: ignore[type-var, operator]
        "studyready_to_start": to_start,
        "route": [r["route_s"] for r in rows], "wait": [r["wait_s"] for r in rows],
        "run": [r["run_s"] for r in rows], "record": [r["record_s"] for r in rows],
    }
    return out


def run(mode: str, db_kind: str, studies: int, senders: int, tmp: Path) -> dict[str, Any]:
    url, drop = database(db_kind, tmp)
    engine = make_engine(url)
    metadata.create_all(engine)
    redis_proc = None
    workers: list[subprocess.Popen[bytes]] = []
    runner = None
    try:
        if mode == "redis":
            port = free_port()
            redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL)
            cfg = config(f"redis://127.0.0.1:{port}/0")
            cfg_path = tmp / f"cfg-{port}.json"
            cfg_path.write_text(json.dumps(cfg.model_dump(mode="json", by_alias=True)))
            for i in range(2):
                log = open(tmp / f"worker-{port}-{i}.log", "wb")  # noqa: SIM115
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "workers.worker_main", "--config", str(cfg_path),
                     "--db", url, "-P", "solo", "-n", f"bench{i}@%h", "-l", "WARNING"],
                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            time.sleep(4)  # let both workers connect before the clock starts
        else:
            cfg = config(None)
            runner = EmbeddedRunner(engine, cfg)
            runner.start()
        # idle latency first: one study at a time, each waited for, so nothing queues
        transport = default_transport(cfg)
        for n in range(1, LATENCY_STUDIES + 1):
            on_study_ready(engine, cfg, samples.study(samples.series()), transport=transport)
            wait_done(engine, n)
        idle = stages(engine)
        with engine.begin() as conn:
            conn.execute(jobs.delete())
        submit_s = submit_all(engine, cfg, studies, senders)
        wait_done(engine, studies)
        result = stages(engine)
        result["submit_s"] = submit_s
        result["idle"] = idle
        return result
    finally:
        if runner is not None:
            runner.stop(10)
        for proc in workers:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait()
        engine.dispose()
        drop()


def _ms(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    return f"{pct(present, 0.5) * 1000:.1f} / {pct(present, 0.95) * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default="embedded,redis")
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for db_kind in args.dbs.split(","):
            for mode in args.modes.split(","):
                results.append((mode, db_kind,
                                run(mode, db_kind, args.studies, args.senders, Path(tmp))))
    print(f"Idle latency ({LATENCY_STUDIES} studies one at a time), p50 / p95 in ms\n")
    print("| mode | db | StudyReady -> job start | job end -> outputs recorded |")
    print("|---|---|---|---|")
    for mode, db_kind, r in results:
        idle = r["idle"]
        print(f"| {mode} | {db_kind} | {_ms(idle['studyready_to_start'])} | "
              f"{_ms(idle['record'])} |")
    print(f"\nLoad: {args.studies} studies from {args.senders} concurrent senders, 2 workers; "
          "p50 / p95 in ms\n")
    print("| mode | db | jobs/s | submit s | StudyReady -> start | route | queue wait | run | "
          "record |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, db_kind, r in results:
        print(f"| {mode} | {db_kind} | {r['throughput_jobs_per_s']:.1f} | {r['submit_s']:.2f} | "
              f"{_ms(r['studyready_to_start'])} | {_ms(r['route'])} | {_ms(r['wait'])} | "
              f"{_ms(r['run'])} | {_ms(r['record'])} |")


if __name__ == "__main__":
    main()
