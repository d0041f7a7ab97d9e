"""`infernode deliveries ...`: the delivery outbox from the command line.

The main CLI registers it: `app.add_typer(cli_deliveries.app, name="deliveries")`. Each command
takes `--config` (the node's settings file) and `--db` (overrides its database). Replayed and
retried deliveries are sent by the running node's delivery runner at its next poll.
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

from infernode.cli_common import ConfigOption, DbOption, JsonOption, migrated_engine
from workers.db import utcnow
from workers.errors import WorkerError
from workers.outbox import admin
from workers.outbox.admin import DeliveryView

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Deliveries: list, show, dead letters, replay, retry.")
console = Console()



def _engine(config: Path | None, db: str | None) -> Engine:
    from infernode.cli_jobs import load

    url, _ = load(config, db)
    engine = migrated_engine(url)
    return engine


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


def _print(views: Sequence[DeliveryView], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        return
    table = Table("id", "state", "destination", "kind", "study", "pipeline", "att",
                  "next try / delivered", "reason")
    for v in views:
        when = v.delivered_at if v.state == "delivered" else v.next_try_at
        table.add_row(str(v.id), v.state, v.destination, v.kind, v.study_instance_uid,
                      v.pipeline, str(v.attempts),
                      when.strftime("%Y-%m-%d %H:%M:%S") if when else "",
                      v.last_reason or "")
    console.print(table)


@app.command("list")
def list_(config: ConfigOption = None, db: DbOption = None,
          state: Annotated[list[str] | None, typer.Option(
              help="pending, delivered or dead (repeatable)")] = None,
          destination: Annotated[str | None, typer.Option(help="destination name")] = None,
          study: Annotated[str | None, typer.Option(help="Study Instance UID")] = None,
          job: Annotated[str | None, typer.Option(help="job id")] = None,
          limit: Annotated[int, typer.Option(min=1)] = 50, as_json: JsonOption = False) -> None:
    """Deliveries, newest first."""
    engine = _engine(config, db)
    try:
        views = admin.list_deliveries(engine, states=state or (), destination=destination,
                                      study=study, job_id=job, limit=limit)
    except ValueError as exc:
        raise _fail(exc) from exc
    _print(views, as_json)


@app.command()
def show(delivery_id: Annotated[int, typer.Argument(help="delivery id")],
         config: ConfigOption = None, db: DbOption = None) -> None:
    """Everything recorded about one delivery (JSON)."""
    try:
        detail = admin.delivery_detail(_engine(config, db), delivery_id)
    except WorkerError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(detail, indent=2, default=str))


@app.command("dead-letters")
def dead_letters(config: ConfigOption = None, db: DbOption = None,
                 destination: Annotated[str | None, typer.Option()] = None,
                 as_json: JsonOption = False) -> None:
    """Deliveries that failed permanently or gave up, with the reason."""
    _print(admin.dead_letters(_engine(config, db), destination=destination), as_json)


@app.command()
def replay(delivery_ids: Annotated[list[int] | None, typer.Argument(
               help="delivery ids")] = None,
           all_: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
           destination: Annotated[str | None, typer.Option(
               help="with --all: only this destination")] = None,
           config: ConfigOption = None, db: DbOption = None) -> None:
    """Dead letters back to pending with their attempts reset: the given ids, or --all."""
    if not delivery_ids and not all_:
        console.print("give delivery ids or --all")
        raise typer.Exit(2)
    try:
        views = admin.replay(_engine(config, db), utcnow(), delivery_ids=delivery_ids or (),
                             destination=destination)
    except WorkerError as exc:
        raise _fail(exc) from exc
    console.print(f"{len(views)} deliver{'y' if len(views) == 1 else 'ies'} pending again")


@app.command()
def retry(delivery_id: Annotated[int, typer.Argument(help="delivery id")],
          config: ConfigOption = None, db: DbOption = None) -> None:
    """Send now: a backing-off delivery becomes due; a dead or delivered one is sent again."""
    try:
        view = admin.retry(_engine(config, db), delivery_id, utcnow())
    except WorkerError as exc:
        raise _fail(exc) from exc
    console.print(f"delivery {view.id} to {view.destination} is due now "
                  f"(attempts {view.attempts})")
