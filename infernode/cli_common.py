"""What every `infernode` sub-command shares: the --config / --db / --json options, settings
loaded or a clear exit, and a migrated engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from infernode.settings import Settings

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="settings file")]
DbOption = Annotated[str | None, typer.Option("--db", help="database URL (overrides the file)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

_console = Console()


def settings_or_exit(config: Path | None, db: str | None = None, **overrides: Any) -> Settings:
    """The settings of `config` (+ environment, + `db` and `overrides`); every problem printed
    with its key and exit status 2 when they cannot be used."""
    from infernode.settings import ConfigError, load_settings

    if db:
        overrides["database"] = {"url": db}
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        for key, message in exc.problems:
            _console.print(f"[red]config error[/red] {key}: {message}")
        raise typer.Exit(2) from exc


def migrated_engine(url: str) -> Engine:
    """An engine on `url` with every package's tables at their newest revision."""
    from infernode.db import create_engine, migrate

    engine = create_engine(url)
    migrate(engine)
    return engine
