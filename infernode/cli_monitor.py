"""`infernode monitor ...`: daily aggregates and drift, agreement with final reports, the
validation reference of a model, readers' verdicts (docs/MONITORING.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from infernode.cli_common import (
    ConfigOption,
    DbOption,
    JsonOption,
    migrated_engine,
    settings_or_exit,
)
from infernode.settings import Settings
from workers.db import utcnow

if TYPE_CHECKING:
    from inference.cards import ModelCard
    from inference.evaluation.datasets import LabelledStudy

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Monitoring: drift, agreement, references, readers' verdicts.")
console = Console()



def _settings(config: Path | None, db: str | None) -> Settings:
    return settings_or_exit(config, db)


def _engine(url: str) -> Engine:
    return migrated_engine(url)


def _day(text: str | None, default: date) -> date:
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from exc


@app.command()
def aggregate(
    config: ConfigOption = None, db: DbOption = None,
    first: Annotated[str | None, typer.Option("--from", help="first day (default: yesterday)")]
    = None,
    last: Annotated[str | None, typer.Option("--to", help="last day (default: today)")] = None,
) -> None:
    """Recompute the daily aggregates (and their PSI) of the days given, UTC."""
    from workers.monitoring.aggregate import aggregate_range
    from workers.monitoring.reference import load_references

    settings = _settings(config, db)
    today = utcnow().date()
    start, end = _day(first, today - timedelta(days=1)), _day(last, today)
    references = load_references(settings.inference.model_paths)
    engine = _engine(settings.database.url)
    cfg = settings.monitoring
    written = aggregate_range(engine, start, end, lambda p, v: references.get((p, v)), utcnow,
                              window_days=cfg.window_days,
                              min_window_results=cfg.min_window_results)
    engine.dispose()
    console.print(f"{written} daily aggregates written for {start} .. {end}")


@app.command()
def drift(
    config: ConfigOption = None, db: DbOption = None,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    days: Annotated[int, typer.Option(help="the last N stored days")] = 30,
    as_json: JsonOption = False,
) -> None:
    """Daily aggregates: studies, positive rate, not analysed, largest input PSI."""
    from workers.monitoring.aggregate import daily_rows

    settings = _settings(config, db)
    engine = _engine(settings.database.url)
    rows = daily_rows(engine, pipeline)
    engine.dispose()
    cutoff = utcnow().date() - timedelta(days=days)
    rows = [r for r in rows if r["day"] > cutoff]
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table("day", "pipeline", "model", "studies", "positive", "not analysed",
                  "largest PSI")
    for r in rows:
        worst = max((r["psi"] or {}).items(), key=lambda kv: kv[1], default=None)
        table.add_row(
            str(r["day"]), r["pipeline"], r["model_version"], str(r["jobs"]),
            f"{r['positives'] / r['results']:.0%}" if r["results"] else "-",
            ", ".join(f"{k} {v}" for k, v in sorted((r["not_analysed"] or {}).items())) or "0",
            f"{worst[0]} {worst[1]:.3f}" if worst else "-")
    console.print(table)


def _ratio(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return "-"
    return f"{value:.2f} ({interval[0]:.2f}-{interval[1]:.2f})"


@app.command("agreement")
def agreement_cmd(
    config: ConfigOption = None, db: DbOption = None,
    by: Annotated[str, typer.Option(help="grouping, from pipeline,model_version,scanner,month")]
    = "pipeline,model_version,scanner,month",
    since: Annotated[str | None, typer.Option(help="first day (default: 365 days ago)")] = None,
    until: Annotated[str | None, typer.Option(help="last day (default: today)")] = None,
    as_json: JsonOption = False,
) -> None:
    """PPV, sensitivity and specificity (95% Wilson intervals) against final reports and
    readers' verdicts."""
    from workers.monitoring.agreement import GROUPINGS, agreement

    keys = [k.strip() for k in by.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(GROUPINGS))
    if unknown:
        raise typer.BadParameter(f"unknown grouping {', '.join(unknown)}")
    settings = _settings(config, db)
    today = utcnow().date()
    start = datetime.combine(_day(since, today - timedelta(days=365)), datetime.min.time(),
                             tzinfo=UTC)
    end = datetime.combine(_day(until, today) + timedelta(days=1), datetime.min.time(),
                           tzinfo=UTC)
    engine = _engine(settings.database.url)
    groups = agreement(engine, start, end, by=keys)
    engine.dispose()
    if as_json:
        console.print_json(json.dumps([{
            "pipeline": g.pipeline, "model_version": g.model_version, "scanner": g.scanner,
            "month": g.month, "tp": g.tp, "fp": g.fp, "fn": g.fn, "tn": g.tn, "ppv": g.ppv,
            "sensitivity": g.sensitivity, "specificity": g.specificity,
            "intervals": g.intervals()} for g in groups]))
        return
    table = Table("pipeline", "model", "scanner", "month", "n", "TP/FP/FN/TN", "PPV",
                  "sensitivity", "specificity")
    for g in groups:
        ci = g.intervals()
        table.add_row(g.pipeline, g.model_version, g.scanner, g.month, str(g.n),
                      f"{g.tp}/{g.fp}/{g.fn}/{g.tn}", _ratio(g.ppv, ci["ppv"]),
                      _ratio(g.sensitivity, ci["sensitivity"]),
                      _ratio(g.specificity, ci["specificity"]))
    console.print(table)


@app.command()
def reference(
    model_dir: Annotated[Path, typer.Argument(help="the model's folder (holds model.yaml)")],
    cases: Annotated[Path | None, typer.Argument(
        help="folder of held-out validation studies (DICOM); none: held-out phantoms")] = None,
    pipeline: Annotated[str | None, typer.Option(
        help="pipeline the model serves (default: from the card's task)")] = None,
    phantoms: Annotated[int, typer.Option(help="held-out phantom studies (without CASES)")]
    = 40,
    seed: Annotated[int, typer.Option(help="phantom seed (one training never used)")] = 4242,
    matrix: Annotated[int, typer.Option(help="phantom head CT matrix")] = 256,
) -> None:
    """Capture the input reference of a model from held-out validation studies (or held-out
    phantoms written as DICOM) and write it next to the card (monitoring_reference.yaml)."""
    import tempfile

    from inference.cards import load_card
    from workers.monitoring.from_dicom import collect_features
    from workers.monitoring.phantoms import write_phantom_cases
    from workers.monitoring.reference import REFERENCE_FILE, build_reference

    card = load_card(model_dir)
    name = pipeline or card.task.split("-", 1)[0]
    modalities = [card.modality, *(["CR", "DX"] if card.modality in ("CR", "DX") else [])]
    with tempfile.TemporaryDirectory(prefix="infernode-reference-") as scratch:
        if cases is None:
            try:
                write_phantom_cases(card.task, Path(scratch), phantoms, seed, matrix=matrix,
                                    body_parts=card.body_parts or ())
            except ValueError as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from exc
            source = Path(scratch)
            label = f"{phantoms} held-out phantoms (seed {seed})"
        else:
            source, label = cases, cases.name
        found = collect_features(source, modalities)
    for uid, why in found.skipped:
        console.print(f"[yellow]skipped[/yellow] series {uid}: {why}")
    if not found.records:
        console.print(f"[red]no {card.modality} input in {label}[/red]")
        raise typer.Exit(1)
    ref = build_reference(found.records, model=card.id, version=card.version, pipeline=name,
                          source=f"{len(found.records)} inputs: {label}",
                          captured_at=datetime.now(UTC))
    (model_dir / REFERENCE_FILE).write_text(ref.to_yaml(), encoding="utf-8")
    console.print(f"{model_dir / REFERENCE_FILE}: {ref.cases} inputs, pipeline {name}, "
                  f"model {card.id} {card.version}")


@app.command()
def feedback(
    job_id: Annotated[str, typer.Argument(help="the job whose result is judged")],
    agree: Annotated[bool, typer.Option("--agree/--disagree", help="the reader's verdict")],
    reader: Annotated[str, typer.Option(help="who judged (a user name, no patient data)")],
    config: ConfigOption = None, db: DbOption = None,
) -> None:
    """Record a reader's agree / disagree with a job's result."""
    from workers.monitoring.agreement import UnknownJob, record_feedback

    settings = _settings(config, db)
    engine = _engine(settings.database.url)
    try:
        record_feedback(engine, job_id, agree, reader, utcnow())
    except UnknownJob as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    console.print(f"recorded: {reader} {'agrees' if agree else 'disagrees'} with {job_id}")


def history_label_key(card: ModelCard) -> str:
    """The card's study-level class the site's labels speak of: `any` when the card has it,
    else its first label."""
    keys = [label.key for label in card.labels]
    return "any" if "any" in keys else keys[0]


def history_cases(db_url: str, card: ModelCard, days: int = 365) -> Iterator[LabelledStudy]:
    """`models evaluate --layout history --data DB_URL`: the node's analysed studies of the
    card's pipeline from the last `days` days with a final-report label or a reader's
    verdict, read again from the spool."""
    from workers.monitoring.history import HistoryCases, history_studies

    engine = _engine(db_url)
    pipeline = card.task.split("-", 1)[0]
    now = datetime.now(UTC)
    tally = HistoryCases()
    try:
        yield from history_studies(engine, pipeline, history_label_key(card),
                                   now - timedelta(days=days), now + timedelta(days=1), tally)
    finally:
        engine.dispose()
        console.print(f"history of {pipeline}: {tally.found} labelled studies read, "
                      f"{len(tally.skipped)} left out"
                      + (f" ({', '.join(sorted({why for _, why in tally.skipped}))})"
                         if tally.skipped else ""))
