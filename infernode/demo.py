"""`infernode demo`: the node on embedded defaults, fed with sample head CT and MR stroke
studies over C-STORE, showing what each study became: job, findings, outputs and the time each
stage took, then the operator console's address and a one-time login for this run."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from infernode.local_pacs import LocalPacs, start_local_pacs
from infernode.samples import write_sample_studies
from infernode.sender import dicom_files, send_files
from infernode.settings import load_settings

FINAL_STATES = ("succeeded", "failed", "dead_lettered", "superseded")
DEMO_USER = "demo-admin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jobs(node: Any) -> list[sa.RowMapping]:
    with node.engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT study_instance_uid, pipeline, state, result, last_error, wait_s, run_s "
            "FROM jobs")).mappings())


def _deliveries(node: Any) -> dict[str, dict[str, dict[str, int]]]:
    """study -> destination -> state -> count."""
    with node.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT o.study_instance_uid, d.destination, d.state, count(*) AS n "
            "FROM deliveries d JOIN outputs o ON o.id = d.output_id "
            "GROUP BY o.study_instance_uid, d.destination, d.state")).mappings()
        found: dict[str, dict[str, dict[str, int]]] = {}
        for r in rows:
            found.setdefault(r["study_instance_uid"], {}).setdefault(
                r["destination"], {})[r["state"]] = int(r["n"])
    return found


def run_demo(workdir: Path, *, timeout: float, console: Console,
             hold: Callable[[Any], None] | None = None) -> int:
    """Returns the process exit code: 0 when every sample study was analysed. The console
    serves on a free loopback port with a demo admin whose random password is printed once
    (never logged); `hold(node)` runs before the node stops (e.g. wait for Ctrl-C)."""
    from infernode.console.auth import hash_password
    from infernode.node import Node

    if workdir.exists():
        shutil.rmtree(workdir)
    samples = workdir / "samples"
    console.print("[bold]InferNode demo[/bold] (demo model: NOT FOR CLINICAL USE)")
    console.print("generating sample head CT and MR stroke studies (synthetic phantoms)")
    studies = write_sample_studies(samples)
    pacs = start_local_pacs(workdir / "pacs")
    destinations: list[dict[str, Any]] = [{"type": "facade"}]
    if pacs is None:
        console.print("Orthanc is not installed: results stay in the node's outputs folder")
    else:
        console.print(f"local PACS: Orthanc {pacs.aet} on DICOM port {pacs.dicom_port}, "
                      f"web {pacs.url}")
        destinations.append({"type": "dicom", "name": "demo-pacs", "host": "127.0.0.1",
                             "port": pacs.dicom_port, "called_ae": pacs.aet})
    password = secrets.token_urlsafe(12)
    settings = load_settings(
        None,
        data_dir=str(workdir),
        database={"url": f"sqlite:///{workdir / 'infernode.db'}"},
        dicom={"port": 0, "spool_dir": str(workdir / "spool"), "quiet_period_s": 2.0,
               "min_free_bytes": 50_000_000},
        web={"enabled": True, "host": "127.0.0.1", "port": _free_port()},
        workers={"delivery": {"destinations": destinations, "poll_interval_s": 0.5}},
        console={"users": [{"name": DEMO_USER, "role": "admin",
                            "password_hash": hash_password(password)}]},
    )
    # The demo does not wait for the routing rules' longer clinical quiet periods.
    settings.workers.rules[:] = [r.model_copy(update={"quiet_period_s": 2.0})
                                 for r in settings.workers.rules]
    node = Node.build(settings)
    node.start(freeze_heap=True)
    try:
        files = dicom_files(samples)
        if pacs is not None:
            # A hospital PACS holds the images already; the results join those studies.
            send_files(files, host="127.0.0.1", port=pacs.dicom_port, called_ae=pacs.aet,
                       calling_ae="INFERNODE_SCU")
        with Progress(TextColumn("C-STORE"), BarColumn(), MofNCompleteColumn(),
                      console=console) as progress:
            task = progress.add_task("send", total=len(files))
            sent_at = time.monotonic()
            send_files(files, host="127.0.0.1", port=node.server.port,
                       called_ae=settings.dicom.ae_title, calling_ae="INFERNODE_SCU",
                       on_progress=lambda _uid, _status: progress.advance(task))
        wanted = {identity.study_instance_uid for identity, _ in studies}
        deadline = time.monotonic() + timeout
        with console.status("waiting for study completion and analysis"):
            while time.monotonic() < deadline:
                done = {j["study_instance_uid"] for j in _jobs(node)
                        if j["state"] in FINAL_STATES}
                deliveries = _deliveries(node)
                # Delivery rows appear on the runner's next pass after a job succeeds.
                settled = wanted <= deliveries.keys() and not any(
                    state == "pending"
                    for per_dest in deliveries.values()
                    for states in per_dest.values() for state in states)
                if wanted <= done and settled:
                    break
                node.delivery.wake()
                time.sleep(0.3)
        elapsed = time.monotonic() - sent_at
        code = _report(console, node, studies, elapsed, pacs)
        console.print(f"operator console: http://127.0.0.1:{settings.web.port}/  "
                      f"user {DEMO_USER}, one-time password {password}", soft_wrap=True)
        if hold is None:
            console.print("(valid while the demo runs: `infernode demo --keep-running` keeps "
                          "the node up to browse it)")
        else:
            console.print("(valid while the demo runs; Ctrl-C stops it)")
            hold(node)
        return code
    finally:
        node.stop()
        if pacs is not None:
            pacs.stop()


_TARGETS = {"ich": "ICH", "stroke": "infarct", "fracture": "fracture"}


def _finding(pipeline: str, summary: dict[str, Any]) -> str:
    """One line for the table: the positive classes with their volumes, or what was not seen."""
    if not summary.get("positive"):
        return f"no {_TARGETS.get(pipeline, 'finding')} detected"
    volumes = [f"{key[:-3]} {value:.1f} mL" for key, value in summary.items()
               if key.endswith("_ml") and isinstance(value, int | float) and value > 0]
    positive = str(summary["positive"]).replace(",", ", ")
    return f"positive: {positive}" + (f" ({', '.join(volumes)})" if volumes else "")


_KIND_NAMES = {"dicom": "DICOM", "dicom-gsps": "GSPS", "dicom-overlay": "overlay",
               "fhir-bundle": "FHIR", "hl7-oru": "HL7 ORU"}


def results_table() -> Table:
    """The demo's result table, laid out to fit an 80-column terminal: short headers, the
    sample's description under its accession number, one output kind / destination a line,
    the queue wait over the run time (seconds)."""
    table = Table(title="Results", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("study", min_width=10, max_width=12)
    table.add_column("pipeline", no_wrap=True)
    table.add_column("AI result", ratio=3, overflow="fold")
    table.add_column("outputs", no_wrap=True)
    table.add_column("delivered to", ratio=2, min_width=12, overflow="fold")
    table.add_column("wait/run", no_wrap=True, justify="right")
    return table


def wait_for_interrupt(node: Any) -> None:
    """`hold` for an interactive run: keep the node and its console up until Ctrl-C."""
    del node
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def fill_results(table: Table, studies: list[Any], jobs: dict[str, Any],
                 deliveries: dict[str, dict[str, dict[str, int]]]) -> bool:
    """One row per sample study (identity, label) from its job row and its deliveries
    (destination -> state -> count); True when every study's job succeeded."""
    ok = True
    for identity, label in studies:
        job = jobs.get(identity.study_instance_uid)
        if job is None:
            table.add_row(f"{identity.accession_number}\n[dim]{label}[/dim]", "-",
                          "not routed or not complete", "", "", "")
            ok = False
            continue
        result = job["result"] or {}
        if isinstance(result, str):
            result = json.loads(result)
        summary = result.get("summary", {})
        kinds: dict[str, int] = {}
        for out in result.get("outputs", []):
            kinds[out["kind"]] = kinds.get(out["kind"], 0) + 1
        if summary.get("indeterminate"):
            finding = f"indeterminate, read as usual: {summary['indeterminate']}"
        else:
            finding = summary.get("not_analysed") or _finding(job["pipeline"], summary)
        if result.get("priority_flag"):
            finding = f"[bold red]{result['priority_flag']}[/bold red] ({finding})"
        if job["state"] != "succeeded":
            finding = f"{job['state']}: {finding}"
        table.add_row(
            f"{identity.accession_number}\n[dim]{label}[/dim]", job["pipeline"], finding,
            "\n".join(f"{n} {_KIND_NAMES.get(k, k)}" for k, n in sorted(kinds.items())),
            "\n".join(
                f"{dest}: " + ", ".join(f"{n} {st}" for st, n in sorted(states.items()))
                for dest, states in sorted(deliveries.get(identity.study_instance_uid,
                                                          {}).items())) or "-",
            f"{job['wait_s'] or 0:.2f}\n{job['run_s'] or 0:.2f}",
        )
        ok = ok and job["state"] == "succeeded"
    return ok


def _report(console: Console, node: Any, studies: list[Any], elapsed: float,
            pacs: LocalPacs | None) -> int:
    table = results_table()
    ok = fill_results(table, studies, {j["study_instance_uid"]: j for j in _jobs(node)},
                      _deliveries(node))
    console.print(table)
    outputs_dir = node.settings.data_dir / "outputs"
    console.print(f"outputs (SEG/SR/KOS, FHIR Bundle, HL7 ORU) under {outputs_dir}")
    if pacs is not None:
        for identity, _label in studies:
            console.print(f"PACS study {identity.accession_number}: "
                          f"{pacs.instance_count(identity.study_instance_uid)} instances "
                          "(the images, and the AI results as new series)")
    console.print(f"from first C-STORE to last result: {elapsed:.1f} s "
                  f"(includes the {node.settings.dicom.quiet_period_s:g} s quiet period)")
    return 0 if ok else 1
