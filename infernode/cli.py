"""The `infernode` command line."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infernode.cli_common import settings_or_exit
from infernode.settings import ConfigError, Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="InferNode: AI inference node")
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML or TOML settings file")
]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return settings_or_exit(config, **overrides)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SQLAlchemy's statement echo at INFO would print SQL parameters (patient IDs, accession
    # numbers); the engines hide them too, this keeps the statements themselves out.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    from infernode.logs import install

    install()  # pydicom's warnings summarised, library exception messages withheld


@app.command()
def serve(
    config: ConfigOption = None,
    db: Annotated[str | None, typer.Option(help="database URL (overrides the file)")] = None,
    port: Annotated[int | None, typer.Option(help="DICOM port (overrides the file)")] = None,
    broker: Annotated[str | None, typer.Option(
        help="Celery broker URL, e.g. redis://host:6379/0 (default: embedded worker)")] = None,
) -> None:
    """Run the node: DICOM listener, study assembly and web API, until interrupted."""
    from infernode.node import Node

    overrides: dict[str, object] = {}
    if db:
        overrides["database"] = {"url": db}
    if port is not None:
        overrides["dicom"] = {"port": port}
    if broker:
        overrides["workers"] = {"broker_url": broker}
    settings = _settings(config, **overrides)
    _logging(settings.log_level)
    node = Node.build(settings)
    node.start(freeze_heap=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print(
        f"InferNode listening: AE {settings.dicom.ae_title} on "
        f"{settings.dicom.host}:{node.server.port}"
        + (f", web on http://{settings.web.host}:{settings.web.port}"
           if settings.web.enabled else "")
    )
    stop.wait()
    node.stop()


def config_findings(settings: Settings) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) of valid settings, each (dotted key, message): what `check-config`
    prints after the file parsed, and what the console's Configuration page shows."""
    problems = []
    spool = settings.dicom.spool_dir
    parent = next((p for p in [spool, *spool.parents] if p.exists()), None)
    if parent is None or not parent.is_dir():
        problems.append(("dicom.spool_dir", "no existing parent folder"))
    warnings = []
    if not settings.dicom.require_known_peers:
        warnings.append(("dicom.require_known_peers", "any peer may store"))
    web_problems, web_warnings = _web_findings(settings)
    return problems + web_problems, warnings + web_warnings


def _web_findings(settings: Settings) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    from infernode.security import is_loopback

    problems, warnings = [], []
    web = settings.web
    for key, path in (("web.tls_certfile", web.tls_certfile),
                      ("web.tls_keyfile", web.tls_keyfile)):
        if path is not None and not Path(path).is_file():
            problems.append((key, f"no such file: {path}"))
    if web.enabled and not is_loopback(web.host):
        if not web.api_tokens:
            warnings.append(("web.api_tokens", "none while web.host is not loopback: "
                             "/metrics, /api, /docs and /openapi.json answer 401 to everyone"))
        if web.tls_certfile is None:
            warnings.append(("web.tls_certfile", "the web port is reachable from the network "
                             "over plain HTTP"))
    if settings.audit.syslog is not None and not settings.audit.syslog.tls:
        warnings.append(("audit.syslog.tls", "audit messages leave in clear text"))
    return problems, warnings


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="settings file to check")],
) -> None:
    """Validate a settings file; print every problem with its key."""
    try:
        settings = load_settings(file)
    except ConfigError as exc:
        for key, message in exc.problems:
            console.print(f"[red]error[/red] {key}: {message}")
        raise typer.Exit(1) from exc
    problems, warnings = config_findings(settings)
    for key, message in warnings:
        console.print(f"[yellow]warning[/yellow] {key}: {message}")
    for key, message in problems:
        console.print(f"[red]error[/red] {key}: {message}")
    if problems:
        raise typer.Exit(1)
    console.print(f"{file}: OK")


@app.command()
def send(
    folder: Annotated[Path, typer.Argument(help="folder with DICOM files (searched recursively)")],
    host: str = "127.0.0.1",
    port: int = 11112,
    called_ae: Annotated[str, typer.Option("--called-ae")] = "INFERNODE",
    calling_ae: Annotated[str, typer.Option("--calling-ae")] = "INFERNODE_SCU",
) -> None:
    """C-STORE every DICOM file under FOLDER to a peer, with a progress bar."""
    from infernode.sender import dicom_files, send_files

    files = dicom_files(folder)
    if not files:
        console.print(f"[red]no DICOM files under {folder}[/red]")
        raise typer.Exit(1)
    from dicom_node.scu.errors import DeliveryPermanentError, DeliveryTransientError

    with Progress(
        TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("send", total=len(files))
        try:
            report = send_files(
                files, host=host, port=port, called_ae=called_ae, calling_ae=calling_ae,
                on_progress=lambda _uid, _status: progress.advance(task),
            )
        except (DeliveryTransientError, DeliveryPermanentError) as exc:
            console.print(f"[red]not all sent: {exc}[/red]")
            raise typer.Exit(1) from exc
    console.print(f"sent {len(report.stored)} of {len(files)}")


@app.command()
def status(config: ConfigOption = None) -> None:
    """Show what the node holds: index counts, jobs by state, deliveries by destination/state."""
    import sqlalchemy as sa

    from dicom_node.index.store import IndexStore
    from infernode.db import create_engine, migrate
    from workers.admin import outcome_counts

    settings = _settings(config)
    engine = create_engine(settings.database.url)
    migrate(engine)
    table = Table("what", "count")
    for key, value in IndexStore(engine).counts().items():
        table.add_row(key, str(value))
    with engine.connect() as conn:
        for state, count in conn.execute(sa.text(
                "SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state")):
            table.add_row(f"jobs {state}", str(count))
    for pipeline, outcome, reason, count in outcome_counts(engine):
        label = outcome.replace("_", " ") + (f" ({reason})" if reason else "")
        table.add_row(f"{pipeline}: {label}", str(count))
    with engine.connect() as conn:
        for dest, state, count in conn.execute(sa.text(
                "SELECT destination, state, count(*) FROM deliveries "
                "GROUP BY destination, state ORDER BY destination, state")):
            table.add_row(f"deliveries to {dest} {state}", str(count))
    engine.dispose()
    console.print(table)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo keeps its data")] = Path("var/demo"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for results")] = 300.0,
    keep_running: Annotated[bool | None, typer.Option(
        "--keep-running/--exit", help="keep the node and its console up until Ctrl-C "
        "(default: when run interactively in a terminal)")] = None,
) -> None:
    """Start the node on embedded defaults, send sample studies, show what happened, and
    print the operator console's address with a one-time login."""
    import sys

    from infernode.demo import run_demo, wait_for_interrupt

    hold = (keep_running if keep_running is not None
            else sys.stdin.isatty() and sys.stdout.isatty())
    raise typer.Exit(run_demo(workdir, timeout=timeout, console=console,
                              hold=wait_for_interrupt if hold else None))


def _register_subcommands() -> None:
    from infernode import cli_deliveries, cli_jobs, cli_models, cli_retention
    from infernode.console import cli as cli_console

    app.add_typer(cli_jobs.app, name="jobs", help="Jobs: list, show, retry, dead letters")
    app.add_typer(cli_deliveries.app, name="deliveries",
                  help="Deliveries: list, show, dead-letters, replay, retry")
    app.add_typer(cli_models.app, name="models", help="Model registry: list, show, verify...")
    app.add_typer(cli_console.app, name="console", help="Operator console: hash-password")
    app.add_typer(cli_retention.app, name="retention",
                  help="Retention: delete studies whose work ended, sweep orphan files")
    from infernode import cli_monitor

    app.add_typer(cli_monitor.app, name="monitor",
                  help="Monitoring: drift, agreement with final reports, references")
    app.command("route", help="Explain which routing rules match a study")(cli_jobs.route)
    app.command("worker", help="Run a Celery worker for some pipelines")(cli_jobs.worker)
    from infernode import cli_audit, cli_db

    app.add_typer(cli_db.app, name="db", help="Database schema: current revisions, upgrade")
    app.command("audit", help="Query the audit trail (time, category, actor, subject)")(
        cli_audit.audit)


_register_subcommands()


def main() -> None:
    from infernode.logs import install

    install()
    app()


if __name__ == "__main__":
    main()
