"""`infernode db`: the schema's revision per package, and upgrading it on its own.

Every command that opens the database migrates first; these two let an operator see where the
schema stands before an upgrade (`db current`, exit status 1 while a branch is behind, so it can
gate a rollout) and migrate alone to watch it (`db upgrade`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from infernode.cli_common import ConfigOption, DbOption, JsonOption, settings_or_exit

if TYPE_CHECKING:
    from infernode.db import BranchState

app = typer.Typer(no_args_is_help=True)
console = Console()


def _show(states: list[BranchState], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps([{"branch": s.branch, "current": s.current, "head": s.head,
                                "at_head": s.at_head} for s in states]))
        return
    table = Table("branch", "current", "head", "state", title=title)
    for state in states:
        table.add_row(state.branch, state.current or "-", state.head,
                      "at head" if state.at_head else "behind")
    console.print(table)


@app.command("current")
def current(config: ConfigOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show each package's applied and newest schema revision (changes nothing); exit status 1
    when a branch is behind."""
    from infernode.db import create_engine, schema_state

    engine = create_engine(settings_or_exit(config, db).database.url)
    try:
        states = schema_state(engine)
    finally:
        engine.dispose()
    _show(states, as_json, "schema")
    if not all(state.at_head for state in states):
        raise typer.Exit(1)


@app.command("upgrade")
def upgrade(config: ConfigOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Migrate every package's tables to their newest revision and show before and after."""
    from infernode.db import create_engine, migrate, schema_state

    engine = create_engine(settings_or_exit(config, db).database.url)
    try:
        before = {state.branch: state.current for state in schema_state(engine)}
        migrate(engine)
        after = schema_state(engine)
    finally:
        engine.dispose()
    if not as_json:
        for state in after:
            if before.get(state.branch) != state.current:
                console.print(f"{state.branch}: {before.get(state.branch) or 'empty'} -> "
                              f"{state.current}")
    _show(after, as_json, "schema after upgrade")
