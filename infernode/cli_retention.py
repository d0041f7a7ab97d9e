"""Retention: the pass that deletes studies whose work ended long enough ago and sweeps orphan
files, the node's loop that runs it, and `infernode retention run [--dry-run]`.

The facts come from their owners: candidates and deletion of spool files and index rows from
`dicom_node.retention`, whether a study's jobs and deliveries have ended and its output files
from `workers.retention`. The main CLI registers the commands:
`app.add_typer(cli_retention.app, name="retention")`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry, Counter, Gauge
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from dicom_node import retention as spool_retention
from dicom_node.spool import Spool
from infernode.audit import AuditEvent, AuditLog, Category
from infernode.cli_common import ConfigOption, DbOption
from workers import retention as work_retention
from workers.config import RetentionConfig

log = logging.getLogger(__name__)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Retention: delete studies whose work ended, sweep orphan files.")
console = Console()


@dataclass
class RetentionReport:
    """One pass: the studies due (deleted unless a dry run), those kept with the reason, and
    what was removed. UIDs and counts only."""

    dry_run: bool
    due: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)
    studies_deleted: int = 0
    spool_files: int = 0
    output_files: int = 0
    bytes: int = 0
    orphans: dict[str, int] = field(default_factory=dict)


class RetentionMetrics:
    """`infernode_retention_*` counters on the node's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.studies = Counter("infernode_retention_studies_deleted_total",
                               "Studies whose files retention deleted", registry=registry)
        self.files = Counter("infernode_retention_files_deleted_total",
                             "Files retention deleted, by kind (spool, outputs)", ["kind"],
                             registry=registry)
        self.bytes = Counter("infernode_retention_bytes_deleted_total",
                             "Bytes retention deleted", registry=registry)
        self.orphans = Counter("infernode_orphan_files_removed_total",
                               "Orphan files removed, by kind (tmp, outputs, rejected)",
                               ["kind"], registry=registry)
        self.last_run = Gauge("infernode_retention_last_run_timestamp_seconds",
                              "When the last retention pass ended", registry=registry)


class Retention:
    """Runs retention passes over one node's database, spool and output folder."""

    def __init__(self, engine: Engine, spool: Spool, policy: RetentionConfig, output_dir: Path,
                 *, metrics: RetentionMetrics | None = None,
                 watch: spool_retention.SpoolWatch | None = None) -> None:
        self.engine = engine
        self.spool = spool
        self.policy = policy
        self.output_dir = Path(output_dir)
        self.metrics = metrics
        self.watch = watch
        self.audit = AuditLog(engine)

    def run(self, now: datetime, *, dry_run: bool = False) -> RetentionReport:
        """One pass at `now`: judges every complete live study old enough to be due under the
        shortest configured period, deletes those due (spool files, index rows behind a
        tombstone, output files) and sweeps orphans. With `dry_run` nothing is deleted."""
        report = RetentionReport(dry_run=dry_run)
        if self.watch is not None:
            self.watch.check()
        periods = [d for d in (self.policy.days, *self.policy.pipelines.values())
                   if d is not None]
        if periods:
            before = now - timedelta(days=min(periods))
            listed = spool_retention.candidates(self.engine, before)
            due, kept = work_retention.judge(
                self.engine, self.policy,
                [(c.study_instance_uid, c.last_received_at) for c in listed], now)
            by_uid = {c.study_instance_uid: c for c in listed}
            report.due = [d.study_instance_uid for d in due]
            for k in kept:
                report.kept[k.reason] = report.kept.get(k.reason, 0) + 1
            if not dry_run:
                for item in due:
                    self._delete(by_uid[item.study_instance_uid], now, report)
        if not dry_run:
            self._sweep(now, report)
        if self.metrics is not None and not dry_run:
            self.metrics.last_run.set(now.timestamp())
        return report

    def _delete(self, candidate: spool_retention.Candidate, now: datetime,
                report: RetentionReport) -> None:
        gone = spool_retention.delete_study(self.engine, self.spool, candidate, now)
        files, size = work_retention.delete_outputs(self.engine, candidate.study_instance_uid,
                                                    self.output_dir)
        report.studies_deleted += int(gone.tombstoned)
        report.spool_files += gone.files
        report.output_files += files
        report.bytes += gone.bytes + size
        log.info("retention deleted study=%s spool_files=%d output_files=%d bytes=%d",
                 candidate.study_instance_uid, gone.files, files, gone.bytes + size)
        self.audit.record(AuditEvent(
            Category.INSTANCES, "deleted_by_retention", actor="retention",
            subject=candidate.study_instance_uid, at=now,
            detail={"spool_files": gone.files, "output_files": files,
                    "bytes": gone.bytes + size, "tombstoned": gone.tombstoned}))
        if self.metrics is not None:
            self.metrics.studies.inc(int(gone.tombstoned))
            self.metrics.files.labels(kind="spool").inc(gone.files)
            self.metrics.files.labels(kind="outputs").inc(files)
            self.metrics.bytes.inc(gone.bytes + size)

    def _sweep(self, now: datetime, report: RetentionReport) -> None:
        grace = self.policy.orphan_grace_s
        report.orphans["tmp"] = spool_retention.sweep_temporary(self.spool, now, grace)
        report.orphans["outputs"] = work_retention.sweep_orphan_outputs(
            self.engine, self.output_dir, now, grace)
        rejected_days = self.policy.rejected_days or self.policy.days
        report.orphans["rejected"] = (
            0 if rejected_days is None
            else spool_retention.sweep_rejected(self.spool, now, rejected_days * 86400))
        spool_retention.clear_revived(self.engine)
        if self.metrics is not None:
            for kind, count in report.orphans.items():
                self.metrics.orphans.labels(kind=kind).inc(count)

    def loop(self, stop: threading.Event, clock: Callable[[], datetime]) -> None:
        """Runs a pass every `policy.interval_s` until `stop` is set, and checks the spool's
        free space every minute in between; a failing pass is logged (without values) and the
        next one tries again."""
        tick = min(60.0, self.policy.interval_s)
        due = clock() + timedelta(seconds=self.policy.interval_s)
        while not stop.wait(tick):
            now = clock()
            try:
                if now >= due:
                    due = now + timedelta(seconds=self.policy.interval_s)
                    self.run(now)
                elif self.watch is not None:
                    self.watch.check()
            except Exception as exc:  # noqa: BLE001 - a DB or disk blip must not end the loop
                log.error("retention pass failed: %s", type(exc).__name__)




@app.command("run")
def run_command(
    config: ConfigOption = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One retention pass now: studies due are deleted (with --dry-run only listed)."""
    from infernode.cli_common import migrated_engine, settings_or_exit

    settings = settings_or_exit(config, db)
    engine = migrated_engine(settings.database.url)
    try:
        spool = Spool(settings.dicom.spool_dir, settings.dicom.min_free_bytes)
        retention = Retention(engine, spool, settings.workers.retention,
                              settings.data_dir / "outputs")
        report = retention.run(datetime.now(UTC), dry_run=dry_run)
    finally:
        engine.dispose()
    if as_json:
        console.print_json(json.dumps(asdict(report)))
        return
    table = Table("study due" + (" (dry run: kept)" if dry_run else " (deleted)"))
    for uid in report.due:
        table.add_row(uid)
    console.print(table)
    kept = ", ".join(f"{n} {reason}" for reason, n in sorted(report.kept.items())) or "none"
    console.print(f"kept: {kept}")
    if not dry_run:
        console.print(f"deleted {report.studies_deleted} studies, {report.spool_files} spool "
                      f"files, {report.output_files} output files, {report.bytes} bytes; "
                      f"orphans removed: {report.orphans}")
