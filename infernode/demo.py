"""`infernode demo`: the node on embedded defaults, fed with sample head CT and MR stroke
studies over C-STORE, showing what each study became: job, findings, outputs and the time each
stage took."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from infernode.local_pacs import LocalPacs, start_local_pacs
from infernode.samples import write_sample_studies
from infernode.sender import dicom_files, send_files
from infernode.settings import load_settings

FINAL_STATES = ("succeeded", "failed", "dead_lettered", "superseded")


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


def run_demo(workdir: Path, *, timeout: float, console: Console) -> int:
    """Returns the process exit code: 0 when every sample study was analysed."""
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
    settings = load_settings(
        None,
        data_dir=str(workdir),
        database={"url": f"sqlite:///{workdir / 'infernode.db'}"},
        dicom={"port": 0, "spool_dir": str(workdir / "spool"), "quiet_period_s": 2.0,
               "min_free_bytes": 50_000_000},
        web={"enabled": False},
        workers={"delivery": {"destinations": destinations, "poll_interval_s": 0.5}},
    )
    # The demo does not wait for the routing rules' longer clinical quiet periods.
    settings.workers.rules[:] = [r.model_copy(update={"quiet_period_s": 2.0})
                                 for r in settings.workers.rules]
    node = Node.build(settings)
    node.start()
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
        return _report(console, node, studies, elapsed, pacs)
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
    return f"positive: {summary['positive']}" + (f" ({', '.join(volumes)})" if volumes else "")


def _report(console: Console, node: Any, studies: list[Any], elapsed: float,
            pacs: LocalPacs | None) -> int:
    jobs = {j["study_instance_uid"]: j for j in _jobs(node)}
    deliveries = _deliveries(node)
    table = Table("accession", "sample", "pipeline", "state", "AI result", "outputs",
                  "delivered to", "queue wait (s)", "run (s)", title="Results")
    ok = True
    for identity, label in studies:
        job = jobs.get(identity.study_instance_uid)
        if job is None:
            table.add_row(identity.accession_number, label, "-", "not routed/complete", "", "",
                          "", "", "")
            ok = False
            continue
        result = job["result"] or {}
        if isinstance(result, str):
            import json

            result = json.loads(result)
        summary = result.get("summary", {})
        outputs = result.get("outputs", [])
        kinds: dict[str, int] = {}
        for out in outputs:
            kinds[out["kind"]] = kinds.get(out["kind"], 0) + 1
        finding = summary.get("not_analysed") or _finding(job["pipeline"], summary)
        if result.get("priority_flag"):
            finding = f"[bold red]{result['priority_flag']}[/bold red] ({finding})"
        table.add_row(
            identity.accession_number, label, job["pipeline"], job["state"], finding,
            ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
            "; ".join(
                f"{dest}: " + ", ".join(f"{n} {st}" for st, n in sorted(states.items()))
                for dest, states in sorted(deliveries.get(identity.study_instance_uid,
                                                          {}).items())) or "-",
            f"{job['wait_s'] or 0:.2f}", f"{job['run_s'] or 0:.2f}",
        )
        ok = ok and job["state"] == "succeeded"
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
