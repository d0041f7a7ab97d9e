"""Benchmark: the whole node, from the last instance acknowledged to results where clinicians see
them.

For each run, a new 300-slice 512 x 512 head CT phantom study (a subdural haemorrhage, so the
node writes SR + KOS and raises the priority signal) is C-STOREd from this process to an
in-process node, over one association. The clock starts when the node acknowledges the last
instance and stops when (a) every DICOM output of the job (SR, KOS, and SEG when the model
segments) is stored in Orthanc, read over its REST API, and (b) the report's DiagnosticReport
is returned by the node's FHIR facade. The configured quiet period is subtracted: it is a
deliberate wait for late instances, set per routing rule.

The first study after start is reported apart ("cold": it loads the model); p50 / p95 are over
the following `--runs` studies. Stage times come from the node's own job and delivery rows.

    .venv/bin/python bench/e2e.py [--runs 5] [--slices 300] [--quiet-period 2]
                                  [--device auto|cpu|cuda] [--workdir DIR]

`--device auto` measures on CPU, then on CUDA as well when torch sees a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bench/ holds scripts named like packages (inference.py) and like the standard library
# (queue.py): take this folder off the import path before anything is imported from it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series  # noqa: E402
from infernode.node import Node  # noqa: E402
from infernode.sender import send_files  # noqa: E402
from tests.e2e.e2e_support import (  # noqa: E402
    Facade,
    NodePlan,
    deliveries,
    jobs,
    node_settings,
    running_node,
)
from tests.support.net import free_port  # noqa: E402
from tests.support.peers.orthanc import OrthancServer, running_orthanc  # noqa: E402
from workers.db import as_utc  # noqa: E402

SENDER_AE = "INFERNODE_SCU"
POLL_S = 0.05


@dataclass(frozen=True)
class Run:
    """One study's figures, in seconds."""

    send_s: float  # first C-STORE request to last acknowledgement
    e2e_s: float  # last acknowledgement to results in the PACS and the facade, minus quiet
    stages: dict[str, float]


def write_studies(folder: Path, count: int, slices: int) -> list[tuple[StudyIdentity, list[Path]]]:
    """`count` studies of the same phantom, each with new Study/Series/SOP UIDs."""
    from inference.phantoms import PhantomSpec, make_head_ct

    spec = PhantomSpec(shape=(slices, 512, 512), pixel_mm=0.45, slice_mm=0.5,
                       subtypes=("subdural",), seed=7)
    hu = np.round(make_head_ct(spec).volume.array).astype(np.int16)
    studies = []
    for i in range(count):
        identity = StudyIdentity(patient_id=f"BENCH-{i:04d}", patient_name=f"Bench^Run{i}",
                                 accession_number=f"BENCHACC{i:04d}")
        datasets = volume_series(
            hu, (spec.slice_mm, spec.pixel_mm, spec.pixel_mm), identity=identity,
            spec=SeriesSpec(series_description="Head 0.5mm axial"),
            origin=(-115.0, -115.0, -75.0))
        paths = [Path(p) for p in write_series(datasets, str(folder / f"study{i:03d}"))]
        studies.append((identity, paths))
    return studies


def _outputs(node: Node, study_uid: str) -> tuple[list[str], str] | None:
    """(SOP UIDs of the DICOM outputs, `system|value` of the report) once the job succeeded."""
    job = jobs(node).get(study_uid)
    if job is not None and job["state"] in ("failed", "dead_lettered", "superseded"):
        raise RuntimeError(f"job {job['id']} ended {job['state']}")
    if job is None or job["state"] != "succeeded":
        return None
    result = job["result"]
    if isinstance(result, str):
        result = json.loads(result)
    sops = [o["uid"] for o in result["outputs"] if o["kind"] == "dicom"]
    [bundle_path] = [o["path"] for o in result["outputs"] if o["kind"] == "fhir-bundle"]
    bundle = json.loads(Path(bundle_path).read_text())
    # the report's own identifier comes first (the accession follows it)
    ident = next(e["resource"]["identifier"] for e in bundle["entry"]
                 if e["resource"]["resourceType"] == "DiagnosticReport")[0]
    return sops, f"{ident['system']}|{ident['value']}"


def _wait_results(node: Node, pacs: OrthancServer, facade: Facade, study_uid: str,
                  timeout_s: float) -> tuple[float, float]:
    """Monotonic times at which the PACS holds every DICOM output and the facade serves the
    report; polled every POLL_S."""
    deadline = time.monotonic() + timeout_s
    outputs = None
    in_pacs: float | None = None
    in_facade: float | None = None
    while time.monotonic() < deadline:
        outputs = outputs or _outputs(node, study_uid)
        if outputs is not None:
            sops, report = outputs
            if in_pacs is None and all(pacs.find_instance(s) for s in sops):
                in_pacs = time.monotonic()
            if in_facade is None and facade.search("DiagnosticReport", identifier=report)["total"]:
                in_facade = time.monotonic()
            if in_pacs is not None and in_facade is not None:
                return in_pacs, in_facade
        time.sleep(POLL_S)
    raise RuntimeError(f"results of the study not seen within {timeout_s} s "
                       f"(job: {jobs(node).get(study_uid, {}).get('state')})")


def _stages(node: Node, study_uid: str, acked_at: datetime) -> dict[str, float]:
    """Seconds per stage, from the node's own timestamps (UTC)."""
    job = jobs(node)[study_uid]
    t = {k: as_utc(job[k]) for k in ("study_completed_at", "started_at", "run_finished_at",
                                      "finished_at")}
    delivered: dict[str, datetime] = {}
    for row in deliveries(node):
        at = as_utc(row["delivered_at"])
        if row["study_instance_uid"] == study_uid and at is not None:
            delivered[row["destination"]] = max(delivered.get(row["destination"], at), at)

    def span(a: datetime | None, b: datetime | None) -> float:
        return (b - a).total_seconds() if a is not None and b is not None else float("nan")

    return {
        "complete": span(acked_at, t["study_completed_at"]),
        "to start": span(t["study_completed_at"], t["started_at"]),
        "run": span(t["started_at"], t["run_finished_at"]),
        "record": span(t["run_finished_at"], t["finished_at"]),
        "to PACS": span(t["finished_at"], delivered.get("pacs")),
        "to facade": span(t["finished_at"], delivered.get("facade")),
    }


def one_run(node: Node, pacs: OrthancServer, facade: Facade, study: StudyIdentity,
            files: list[Path], quiet_s: float) -> Run:
    acks: list[float] = []
    started = time.monotonic()
    send_files(files, host="127.0.0.1", port=node.server.port,
               called_ae=node.settings.dicom.ae_title, calling_ae=SENDER_AE,
               on_progress=lambda _uid, _status: acks.append(time.monotonic()))
    last_ack = acks[-1]
    acked_at = datetime.now(UTC) - timedelta(seconds=time.monotonic() - last_ack)
    in_pacs, in_facade = _wait_results(node, pacs, facade, study.study_instance_uid, 600)
    stages = _stages(node, study.study_instance_uid, acked_at)
    stages["complete"] -= quiet_s
    return Run(send_s=last_ack - started, e2e_s=max(in_pacs, in_facade) - last_ack - quiet_s,
               stages=stages)


def bench_device(device: str, args: argparse.Namespace, workdir: Path,
                 studies: list[tuple[StudyIdentity, list[Path]]]) -> list[Run]:
    """Runs every study through a fresh node and a fresh Orthanc on `device`."""
    folder = workdir / device
    with running_orthanc(folder / "orthanc", ready_timeout_s=60) as pacs:
        plan = NodePlan(folder=folder / "node", pacs=pacs, web_port=free_port(),
                        quiet_period_s=args.quiet_period, senders=(SENDER_AE,),
                        node={"inference": {"device": device}})
        runs = []
        with running_node(node_settings(plan)) as node:
            facade = Facade(plan.web_port)
            for i, (identity, files) in enumerate(studies):
                run = one_run(node, pacs, facade, identity, files, args.quiet_period)
                label = "cold" if i == 0 else f"run {i}"
                print(f"  {device} {label}: send {run.send_s:.2f} s, "
                      f"ack -> results {run.e2e_s:.2f} s (quiet period excluded)", flush=True)
                runs.append(run)
    return runs


def _pct(values: list[float], q: float) -> float:
    # linear interpolation between closest ranks (numpy's default)
    return float(np.percentile(values, q))


def report(device: str, runs: list[Run]) -> None:
    cold, warm = runs[0], runs[1:]
    e2e = [r.e2e_s for r in warm]
    print(f"\n{device}: {len(warm)} warm runs (+1 cold)")
    print(f"{'measure':<34} {'p50':>7} {'p95':>7} {'cold':>7}")
    print(f"{'ack -> SR/KOS in PACS + FHIR (s)':<34} {_pct(e2e, 50):>7.2f} {_pct(e2e, 95):>7.2f} "
          f"{cold.e2e_s:>7.2f}")
    print(f"{'C-STORE of the study (s)':<34} {_pct([r.send_s for r in warm], 50):>7.2f} "
          f"{_pct([r.send_s for r in warm], 95):>7.2f} {cold.send_s:>7.2f}")
    for stage in cold.stages:
        vals = [r.stages[stage] for r in warm]
        name = f"  stage: {stage}" + (" (minus quiet)" if stage == "complete" else "")
        print(f"{name:<34} {_pct(vals, 50):>7.2f} {_pct(vals, 95):>7.2f} "
              f"{cold.stages[stage]:>7.2f}")
    print(f"warm runs, ack -> results: {', '.join(f'{v:.2f}' for v in e2e)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="warm runs per device (after one cold)")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--quiet-period", type=float, default=2.0,
                    help="quiet period of the routing rules (s); subtracted from the figures")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()
    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("no CUDA device: CPU only", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    command = (f"python bench/e2e.py --runs {args.runs} --slices {args.slices} "
               f"--quiet-period {args.quiet_period:g} --device {args.device}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="infernode-bench-e2e-"))
    try:
        t = time.monotonic()
        studies = write_studies(workdir / "studies", args.runs + 1, args.slices)
        print(f"wrote {len(studies)} studies of {args.slices} slices "
              f"({time.monotonic() - t:.1f} s)", flush=True)
        results = {device: bench_device(device, args, workdir, studies) for device in devices}
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ncommand: {command}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for device, runs in results.items():
        report(device, runs)


if __name__ == "__main__":
    main()
