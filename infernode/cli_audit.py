"""`infernode audit`: query the audit trail by time, category, actor and subject."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infernode.audit import AuditLog, AuditRecord, Category

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """`2026-12-04T10:00:00` (UTC unless an offset is given), `2026-12-04`, or an age such as
    `30m`, `24h`, `7d` (that long before now). Raises typer.BadParameter otherwise."""
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"not a time or an age: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def audit(
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="YAML or TOML settings file")] = None,
    since: Annotated[str | None, typer.Option(help="from this time or age (24h, 7d)")] = None,
    until: Annotated[str | None, typer.Option(help="before this time or age")] = None,
    category: Annotated[str | None, typer.Option(
        help="one of: " + ", ".join(c.value for c in Category))] = None,
    actor: Annotated[str | None, typer.Option(help="AE title, user or token identity")] = None,
    subject: Annotated[str | None, typer.Option(
        help="study UID, patient reference or job id")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 100,
    output: Annotated[Format, typer.Option("--format", help="table or json (one per line)")]
    = Format.TABLE,
) -> None:
    """Query the audit trail, newest first."""
    from infernode.cli import _settings
    from infernode.db import create_engine, migrate

    if category is not None and category not in {c.value for c in Category}:
        raise typer.BadParameter(f"unknown category {category!r}", param_hint="--category")
    settings = _settings(config)
    engine = create_engine(settings.database.url)
    migrate(engine)
    try:
        records = AuditLog(engine).query(
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            category=category, actor=actor, subject=subject, limit=limit)
    finally:
        engine.dispose()
    if output is Format.JSON:
        for record in records:
            typer.echo(json.dumps(_jsonable(record), sort_keys=True))
        return
    console = Console()  # made here: it reads the terminal's width (COLUMNS) when run
    table = Table("id", "at (UTC)", "category", "action", "outcome", "actor", "source", "subject",
                  "detail")
    for r in records:
        table.add_row(str(r.id), r.at.strftime("%Y-%m-%d %H:%M:%S"), r.category, r.action,
                      r.outcome, r.actor or "", r.source or "", r.subject or "",
                      _short(r.detail))
    console.print(table)
    if not records:
        console.print("no audit events match")


def _jsonable(record: AuditRecord) -> dict[str, object]:
    data = asdict(record)
    data["at"] = record.at.isoformat()
    return data


def _short(detail: dict[str, object], width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in sorted(detail.items())
                     if not isinstance(v, list | dict))
    return text if len(text) <= width else text[: width - 1] + "…"
