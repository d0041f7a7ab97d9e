"""Starting a Celery worker for some pipelines: `infernode worker` calls `run_worker`, and
`python -m workers.worker_main --config FILE --db URL` does the same without the node's
settings (tests, containers)."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Sequence
from pathlib import Path

from celery.signals import worker_process_init

from workers.celery_app import WorkerRuntime, create_celery_app, worker_queues
from workers.config import WorkersConfig

PROCESS_POOLS = ("prefork", "processes")
"""Celery pools that run tasks in child processes ("processes" is prefork's other name)."""


def run_worker(cfg: WorkersConfig, db_url: str, pipelines: Sequence[str] = (), *,
               concurrency: int = 1, pool: str = "prefork", hostname: str | None = None,
               loglevel: str = "INFO") -> int:
    """Run a Celery worker until it is stopped; returns its exit code. `pipelines` defaults
    to the configured `queues` (or all pipelines); one process per model copy (`concurrency`),
    each keeping its models loaded between jobs."""
    served = list(pipelines) or cfg.served_pipelines()
    unknown = set(served) - set(cfg.pipelines)
    if unknown:
        raise ValueError(f"no such pipelines: {sorted(unknown)}")
    name = hostname or f"worker@{socket.gethostname()}"
    runtime = WorkerRuntime(db_url=db_url, cfg=cfg, name=name)
    # highdicom's tables of the standard load when a process that runs jobs starts, not in
    # its first job: in each prefork child as it starts (the parent runs none), else here.
    if pool in PROCESS_POOLS:
        worker_process_init.connect(runtime.warm_up)
    else:
        runtime.warm_up()
    app = create_celery_app(cfg, runtime)
    worker = app.Worker(
        queues=worker_queues(served), concurrency=concurrency, pool=pool,
        hostname=name, loglevel=loglevel, without_gossip=True, without_mingle=True,
        without_heartbeat=True, optimization="fair",
    )
    worker.start()
    return int(worker.exitcode or 0)


def load_config(path: str) -> WorkersConfig:
    """A WorkersConfig from a JSON or YAML file holding the section itself or a `workers` key."""
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, dict) and "workers" in data:
        data = data["workers"]
    return WorkersConfig.model_validate(data or {})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an InferNode Celery worker")
    parser.add_argument("--config", required=True, help="JSON/YAML with the workers section")
    parser.add_argument("--db", required=True, help="SQLAlchemy database URL")
    parser.add_argument("-Q", "--queues", default="", help="comma-separated pipelines")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-P", "--pool", default="prefork")
    parser.add_argument("-n", "--hostname", default=None)
    parser.add_argument("-l", "--loglevel", default="INFO")
    args = parser.parse_args(argv)
    pipelines = [p for p in args.queues.split(",") if p]
    return run_worker(load_config(args.config), args.db, pipelines, concurrency=args.concurrency,
                      pool=args.pool, hostname=args.hostname, loglevel=args.loglevel)


if __name__ == "__main__":
    raise SystemExit(main())
