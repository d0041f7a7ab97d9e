"""`infernode jobs ...`, `infernode route --explain ...` and `infernode worker`.

The main CLI registers them: `app.add_typer(cli_jobs.app, name="jobs")`,
`app.command("route")(cli_jobs.route)`, `app.command("worker")(cli_jobs.worker)`.
Each command takes `--config` (the node's settings file) and `--db` (overrides its database).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from dicom_node.events import StudyReady
from infernode.cli_common import ConfigOption, DbOption, JsonOption, migrated_engine
from workers import admin
from workers.config import WorkersConfig
from workers.db import utcnow
from workers.errors import BrokerUnavailable, WorkerError
from workers.headers import studies_from_files
from workers.messages import Job, JobState
from workers.routing import StudyExplanation, Truth, explain
from workers.submit import default_transport

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Jobs: list, show, retry, dead letters, replay.")
console = Console()



def load(config: Path | None, db: str | None) -> tuple[str, WorkersConfig]:
    """The database URL and the workers section of the node's settings."""
    from infernode.cli_common import settings_or_exit
    from infernode.wiring import workers_config

    settings = settings_or_exit(config, db)

    return settings.database.url, workers_config(settings)


def _engine(url: str) -> Engine:
    return migrated_engine(url)


def _fail(exc: WorkerError) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


def _table(jobs: Sequence[Job]) -> Table:
    table = Table("id", "study", "pipeline", "state", "prio", "att", "created", "error")
    for job in jobs:
        table.add_row(job.id, job.study_instance_uid, f"{job.pipeline} {job.model_version}",
                      job.state.value, job.priority.value, str(job.attempts),
                      job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                      (job.last_error or "")[:60])
    return table


def _print_jobs(jobs: Sequence[Job], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
    else:
        console.print(_table(jobs))


def _send(engine: Engine, cfg: WorkersConfig, jobs: Sequence[Job]) -> None:
    """Hand re-queued jobs to the broker now; the reconciler would do it on its next pass."""
    transport = default_transport(cfg)
    if not transport.sends_messages:
        return
    from workers.jobs import mark_sent

    for job in jobs:
        try:
            transport.send(job)
        except BrokerUnavailable:
            console.print(f"broker unavailable: job {job.id} waits; the reconciler sends it")
            continue
        mark_sent(engine, job.id, utcnow())


@app.command("list")
def list_(config: ConfigOption = None, db: DbOption = None,
          state: Annotated[list[JobState] | None, typer.Option(help="filter by state")] = None,
          study: Annotated[str | None, typer.Option(help="Study Instance UID")] = None,
          pipeline: Annotated[str | None, typer.Option()] = None,
          limit: Annotated[int, typer.Option(min=1)] = 50, as_json: JsonOption = False) -> None:
    """Jobs, newest first."""
    url, _ = load(config, db)
    jobs = admin.list_jobs(_engine(url), states=state or (), study=study, pipeline=pipeline,
                           limit=limit)
    _print_jobs(jobs, as_json)


@app.command()
def show(job_id: Annotated[str, typer.Argument(help="job id")], config: ConfigOption = None,
         db: DbOption = None) -> None:
    """Everything recorded about one job, with each attempt (JSON)."""
    url, _ = load(config, db)
    try:
        detail = admin.job_detail(_engine(url), job_id)
    except WorkerError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(detail, indent=2, default=str))


@app.command()
def retry(job_id: Annotated[str, typer.Argument(help="job id")], config: ConfigOption = None,
          db: DbOption = None) -> None:
    """Run a failed, dead-lettered or succeeded job again (its outputs are replaced)."""
    url, cfg = load(config, db)
    engine = _engine(url)
    try:
        job = admin.retry(engine, job_id, utcnow())
    except WorkerError as exc:
        raise _fail(exc) from exc
    _send(engine, cfg, [job])
    console.print(f"job {job.id} queued again on {job.queue}")


@app.command("dead-letters")
def dead_letters(config: ConfigOption = None, db: DbOption = None,
                 pipeline: Annotated[str | None, typer.Option()] = None,
                 as_json: JsonOption = False) -> None:
    """Jobs that gave up after their attempts, with the reason."""
    url, _ = load(config, db)
    _print_jobs(admin.dead_letters(_engine(url), pipeline=pipeline), as_json)


@app.command()
def replay(job_ids: Annotated[list[str] | None, typer.Argument(help="job ids")] = None,
           all_: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
           pipeline: Annotated[str | None, typer.Option(help="with --all: only these")] = None,
           config: ConfigOption = None, db: DbOption = None) -> None:
    """Queue dead-lettered jobs again: the given ids, or --all (optionally of one pipeline)."""
    if not job_ids and not all_:
        console.print("give job ids or --all")
        raise typer.Exit(2)
    url, cfg = load(config, db)
    engine = _engine(url)
    try:
        jobs = admin.replay(engine, utcnow(), job_ids=job_ids or (), pipeline=pipeline)
    except WorkerError as exc:
        raise _fail(exc) from exc
    _send(engine, cfg, jobs)
    console.print(f"{len(jobs)} job(s) queued again")


def route_explain(target: str, cfg: WorkersConfig,
                  engine: Engine | None = None) -> list[tuple[StudyReady, StudyExplanation]]:
    """Explain routing for `target`: a DICOM file or folder, a JSON StudyReady, or the
    Study Instance UID of a study the node has routed before (needs `engine`).
    Raises ValueError when the target is none of these."""
    path = Path(target)
    if path.is_file() and path.suffix == ".json":
        studies = [StudyReady.model_validate_json(path.read_text())]
    elif path.exists():
        studies = studies_from_files([path])
        if not studies:
            raise ValueError(f"no DICOM instances under {target}")
    else:
        recorded = admin.recorded_study(engine, target) if engine is not None else None
        if recorded is None:
            raise ValueError(f"{target} is neither a file/folder nor a study the node routed")
        studies = [recorded]
    return [(s, explain(s, cfg.rules, cfg.exclusions)) for s in studies]


def format_explanation(study: StudyReady, exp: StudyExplanation) -> str:
    """Plain text: per rule, matched or not and the condition that decided, per series."""
    names = {s.series_instance_uid: f"{s.modality or '?'} '{s.series_description or ''}'"
             for s in study.series}
    lines = [f"study {study.study_instance_uid} ({len(study.series)} series)"]
    for hit in exp.excluded:
        lines.append(f"  excluded {names[hit.series_instance_uid]} [{hit.exclusion}]: "
                     f"{hit.decided_by}")
    for rule in exp.rules:
        verdict = "MATCHED" if rule.matched else "no match"
        lines.append(f"  rule {rule.rule} -> {rule.pipeline}: {verdict} ({rule.reason})")
        for series in rule.series:
            mark = {Truth.TRUE: "+", Truth.FALSE: "-", Truth.UNKNOWN: "?"}[series.truth]
            lines.append(f"    {mark} {names[series.series_instance_uid]}: {series.decided_by}")
    if exp.routed:
        routed = ", ".join(f"{d.pipeline} ({d.priority.value}, {len(d.series_instance_uids)} "
                           f"series)" for d in exp.decisions)
        lines.append(f"  => routed to {routed}")
    else:
        lines.append(f"  => not routed: {exp.not_routed_reason()}")
    return "\n".join(lines)


def route(target: Annotated[str, typer.Argument(help="DICOM file/folder, StudyReady JSON, "
                                                     "or Study Instance UID")],
          explain_: Annotated[bool, typer.Option("--explain", help="explain every rule")] = False,
          config: ConfigOption = None, db: DbOption = None) -> None:
    """Which pipelines a study goes to; with --explain, why each rule matched or not."""
    url, cfg = load(config, db)
    engine = None if Path(target).exists() else _engine(url)
    try:
        results = route_explain(target, cfg, engine)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    for study, exp in results:
        if explain_:
            typer.echo(format_explanation(study, exp))
        else:
            pipelines = ", ".join(d.pipeline for d in exp.decisions) or "(not routed)"
            typer.echo(f"{study.study_instance_uid}: {pipelines}")


def worker(queues: Annotated[str, typer.Option("--queues", "-Q",
                                               help="comma-separated pipelines")] = "",
           concurrency: Annotated[int, typer.Option("--concurrency", min=1,
                                                    help="processes (model copies)")] = 1,
           pool: Annotated[str, typer.Option(help="prefork or solo")] = "prefork",
           broker: Annotated[str | None, typer.Option(help="broker URL (overrides)")] = None,
           loglevel: Annotated[str, typer.Option()] = "INFO",
           config: ConfigOption = None, db: DbOption = None) -> None:
    """Run a Celery worker for some pipelines (distributed mode). The worker reads series
    from the spool, so the spool must be mounted at the same path on this host."""
    from workers.worker_main import run_worker

    url, cfg = load(config, db)
    if broker:
        cfg = WorkersConfig.model_validate({**cfg.model_dump(by_alias=True),
                                            "broker_url": broker})
    if not cfg.broker_url:
        console.print("no broker configured (workers.broker_url or --broker); "
                      "`infernode serve` runs the embedded worker instead")
        raise typer.Exit(2)
    pipelines = [p for p in queues.split(",") if p]
    try:
        code = run_worker(cfg, url, pipelines, concurrency=concurrency, pool=pool,
                          loglevel=loglevel)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    raise typer.Exit(code)
