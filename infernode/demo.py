"""`infernode demo`: the node on embedded defaults, fed with sample studies over C-STORE."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from dicom_node.events import StudyReady
from infernode.samples import write_sample_studies
from infernode.sender import dicom_files, send_files
from infernode.settings import load_settings


def run_demo(workdir: Path, *, timeout: float, console: Console) -> int:
    """Returns the process exit code: 0 when every sample study came through."""
    from infernode.node import Node

    if workdir.exists():
        shutil.rmtree(workdir)
    samples = workdir / "samples"
    console.print("[bold]InferNode demo[/bold]: generating sample head CT studies")
    identities = write_sample_studies(samples)
    settings = load_settings(
        None,
        data_dir=str(workdir),
        database={"url": f"sqlite:///{workdir / 'infernode.db'}"},
        dicom={
            "port": 0,
            "spool_dir": str(workdir / "spool"),
            "quiet_period_s": 2.0,
            "min_free_bytes": 50_000_000,
        },
        web={"enabled": False},
    )
    node = Node.build(settings)
    ready: dict[str, tuple[StudyReady, float]] = {}

    def remember(event: StudyReady) -> None:
        ready.setdefault(event.study_instance_uid, (event, time.time()))

    node.ready_handlers.append(remember)
    node.start()
    try:
        files = dicom_files(samples)
        sent_at = time.time()
        with Progress(
            TextColumn("C-STORE"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("send", total=len(files))
            report = send_files(
                files, host="127.0.0.1", port=node.server.port,
                called_ae=settings.dicom.ae_title, calling_ae="INFERNODE_SCU",
                on_progress=lambda _uid, _status: progress.advance(task),
            )
        wanted = {i.study_instance_uid for i in identities}
        deadline = time.monotonic() + timeout
        while not wanted <= ready.keys() and time.monotonic() < deadline:
            time.sleep(0.2)
        table = Table("study", "accession", "series", "instances", "complete after (s)")
        for identity in identities:
            got = ready.get(identity.study_instance_uid)
            if got is None:
                table.add_row(identity.study_instance_uid[-12:], identity.accession_number,
                              "-", "-", "not complete")
                continue
            event, at = got
            table.add_row(
                "…" + event.study_instance_uid[-12:],
                identity.accession_number,
                str(len(event.series)),
                str(sum(s.instance_count for s in event.series)),
                f"{at - sent_at:.1f}",
            )
        console.print(table)
        console.print(f"stored {len(report.stored)} instances; index: {node.index.counts()}")
        return 0 if wanted <= ready.keys() else 1
    finally:
        node.stop()
