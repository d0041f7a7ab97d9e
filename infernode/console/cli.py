"""`infernode console ...`: helpers for the console's configuration."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Operator console: password hashes for console.users.")


@app.command("hash-password")
def hash_password(
    password: Annotated[str | None, typer.Option(
        "--password", help="the password (default: asked for, not echoed)")] = None,
) -> None:
    """Print an argon2 hash for a `console.users[].password_hash` setting."""
    from infernode.console.auth import hash_password as make_hash

    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        typer.echo("an empty password is not accepted", err=True)
        raise typer.Exit(2)
    typer.echo(make_hash(password))
