"""Benchmark: seconds per study for the demo ICH model (300 x 512 x 512) and BLAST-CT on a
synthetic head CT (inference.phantoms.head_ct; default 32 x 256 x 256, 0.9 mm pixels, 5 mm
slices, resampled by the adapter to 1 mm).

BLAST-CT cases: ``blast-large`` (one member, output patches as large as memory allows) and
``blast-tiles`` (one member, BLAST-CT's 30^3 output tiles) on the CPU; ``blast-ensemble`` and
``blast-ensemble-tiles`` (all 12 members, AMP) on CUDA, skipped with a note when torch sees no
CUDA device. Each case is the median of ``--repeat`` runs after one warm-up pass, and runs in a
fresh subprocess so that peak memory (max RSS; CUDA max allocated) belongs to that case alone.
After the table, one JSON line sums BLAST-CT up: seconds, and tiles / large patches as a ratio
measured in the same run.

Radiograph mode (``--radiograph``, cases ``fracture-cpu`` and ``fracture-cuda``): the demo
fracture detector's ``predict_images`` on one held-out phantom radiograph of
``--radiograph-size`` (default 3000 x 3000) stored pixels, median of ``--repeat`` calls after a
warm-up call, reported as ms per image and images per second with the preprocessing
(downsampling, normalisation) and network + decoding parts; ``fracture-cuda`` reports "cuda: not
available" when torch sees no CUDA device. Usage:

    python bench/inference.py [--threads 2] [--device cpu|cuda|auto] [--repeat 3]
                              [--blast-dir ../shared/models/blast-ct-v1]
                              [--blast-shape 32,256,256] [--cases blast-large,blast-tiles]
    python bench/inference.py --radiograph [--radiograph-size 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.types import Volume

REPO = Path(__file__).resolve().parents[1]
# This script shares its name with the package it measures: drop its own folder from the path
# so that `import inference` finds the package, not this file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))


def _study(slices: int, slice_mm: float) -> Volume:
    from inference.phantoms import PhantomSpec, make_head_ct

    spec = PhantomSpec(shape=(slices, 512, 512), pixel_mm=0.45, slice_mm=slice_mm,
                       subtypes=("subdural", "intraventricular"), seed=99)
    return make_head_ct(spec).volume


BLAST_CASES = {  # case -> (members: None = all, output tile: None = large patches, device)
    "blast-large": (1, None, "cpu"),
    "blast-tiles": (1, 30, "cpu"),
    "blast-ensemble": (None, None, "cuda"),
    "blast-ensemble-tiles": (None, 30, "cuda"),
}


def _blast_case(case: str, repeat: int, blast_dir: str,
                blast_shape: tuple[int, int, int]) -> dict[str, object]:
    from inference.blastct import memory_budget_voxels, plan_patches, to_isotropic
    from inference.phantoms import PhantomSpec, make_head_ct
    from inference.registry import ModelRegistry

    members, tile, want = BLAST_CASES[case]
    reg = ModelRegistry([Path(blast_dir)], device=want, warmup=False)
    pipe = reg.get("blast-ct")
    n = members or len(pipe.networks)  # type: ignore[attr-defined]
    vol = make_head_ct(PhantomSpec(shape=blast_shape, subtypes=("intraparenchymal",),
                                   seed=21)).volume
    iso = tuple(to_isotropic(vol).shape)
    plan = plan_patches(iso, None, memory_budget_voxels(reg.device), tile)
    pipe.warmup()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        pred = pipe.predict(vol, n_models=n, patch_output=tile)  # type: ignore[call-arg]
        times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times), "members": n,
            "head": f"{vol.array.shape} at {vol.spacing} mm -> {iso} at 1 mm",
            "patches": len(plan.patches), "patch": plan.block,
            "note": f"{len(plan.patches)} patch(es) of {plan.block} output voxels",
            "device": str(reg.device), "masks": [m.key for m in pred.masks]}


RADIOGRAPH_CASES = {"fracture-cpu": "cpu", "fracture-cuda": "cuda"}


def _fracture_case(case: str, repeat: int, size: int) -> dict[str, object]:
    """``predict_images`` on one size x size held-out phantom (a leg with one fracture)."""
    from inference.fracture import FracturePipeline
    from inference.phantoms.radiograph import RadiographSpec, make_radiograph
    from inference.registry import ModelRegistry

    phantom = make_radiograph(RadiographSpec(body_part="LEG", fractures=1, family="heldout",
                                             seed=31, rows=size, cols=size))
    image = phantom.radiograph("bench")
    reg = ModelRegistry([REPO / "models"], device=RADIOGRAPH_CASES[case], warmup=False)
    t0 = time.perf_counter()
    pipe = reg.get("fracture-demo")
    load_s = time.perf_counter() - t0
    if not isinstance(pipe, FracturePipeline):
        raise SystemExit("fracture-demo is not a fracture detection model")
    pipe.predict_images([image])  # warm-up: first call pays for kernel selection, allocation
    times, pre, net = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        pred = pipe.predict_images([image])
        times.append(time.perf_counter() - t)
        if pred.timings:
            pre.append(pred.timings.preprocess_s)
            net.append(pred.timings.inference_s)
    seconds = statistics.median(times)
    return {"seconds": seconds, "ms_per_image": seconds * 1e3, "images_per_s": 1 / seconds,
            "runs": times, "load_s": load_s, "device": str(reg.device),
            "image": f"{size} x {size} float32", "detections": len(pred.detections),
            "preprocess_ms": statistics.median(pre) * 1e3 if pre else None,
            "network_decode_ms": statistics.median(net) * 1e3 if net else None}


def run_case(case: str, device: str, threads: int, repeat: int, blast_dir: str,
             blast_shape: tuple[int, int, int], radiograph_size: int = 3000
             ) -> dict[str, object]:
    import torch

    torch.set_num_threads(threads)
    from inference.registry import ModelRegistry

    out: dict[str, object] = {"case": case, "threads": threads}
    if case in RADIOGRAPH_CASES:
        out.update(_fracture_case(case, repeat, radiograph_size))
    elif case.startswith("ich"):
        # ich-thin: 300 x 0.5 mm slices (averaged into 5 mm slabs, 30 network passes);
        # ich-thick: 300 slices treated as 5 mm (300 network passes, the worst case)
        slice_mm = 0.5 if case == "ich-thin" else 5.0
        vol = _study(300, 0.5)
        if slice_mm != 0.5:
            from inference.types import Volume as _Volume

            vol = _Volume.from_array(vol.array, (slice_mm, 0.45, 0.45), vol.slice_ids)
        reg = ModelRegistry([REPO / "models"], device=device)
        t0 = time.perf_counter()
        pipe = reg.get("ich-demo")
        out["load_s"] = time.perf_counter() - t0
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            pred = pipe.predict(vol)
            times.append(time.perf_counter() - t)
        out["seconds"] = statistics.median(times)
        out["timings"] = pred.timings.__dict__ if pred.timings else {}
        out["device"] = str(reg.device)
    else:
        out.update(_blast_case(case, repeat, blast_dir, blast_shape))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _summary(rows: list[dict[str, object]], cuda: bool) -> dict[str, object]:
    """BLAST-CT in one JSON object: seconds per case and tiles / large patches per device."""
    by = {str(r["case"]): r for r in rows if str(r["case"]).startswith("blast")}
    out: dict[str, object] = {"cases": {k: {f: r.get(f) for f in (
        "device", "members", "seconds", "runs", "patches", "patch", "peak_rss_mb",
        "cuda_peak_mb", "head")} for k, r in by.items()}}
    for name, large, tiles in (("cpu_one_member", "blast-large", "blast-tiles"),
                               ("cuda_ensemble", "blast-ensemble", "blast-ensemble-tiles")):
        if large in by and tiles in by:  # runs were taken in turns: pair them
            t_runs, l_runs = (json.loads(json.dumps(by[k]["runs"])) for k in (tiles, large))
            ratios = [float(t) / float(g) for t, g in zip(t_runs, l_runs, strict=False)]
            out[f"{name}_tiles_over_large"] = statistics.median(ratios)
    if not cuda:
        out["cuda"] = "no CUDA device seen by torch: the ensemble on GPU was not timed"
    return out


def _radiograph_summary(rows: list[dict[str, object]], cuda: bool) -> dict[str, object]:
    """The fracture cases in one JSON object: ms per image and images per second per device."""
    out: dict[str, object] = {str(r["case"]): {f: r.get(f) for f in (
        "device", "threads", "image", "ms_per_image", "images_per_s", "preprocess_ms",
        "network_decode_ms", "runs", "peak_rss_mb", "cuda_peak_mb")}
        for r in rows if str(r["case"]) in RADIOGRAPH_CASES}
    if not cuda:
        out["cuda"] = "not available"
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--blast-dir", default=str(REPO.parent / "shared/models/blast-ct-v1"))
    ap.add_argument("--blast-shape", default="32,256,256",
                    help="head CT matrix z,y,x (0.9 mm pixels, 5 mm slices)")
    ap.add_argument("--cases", default="ich-thin,ich-thick," + ",".join(BLAST_CASES))
    ap.add_argument("--radiograph", action="store_true",
                    help="radiograph mode: the fracture cases only (" +
                    ", ".join(RADIOGRAPH_CASES) + ")")
    ap.add_argument("--radiograph-size", type=int, default=3000,
                    help="rows = columns of the phantom radiograph")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    z, y, x = (int(v) for v in args.blast_shape.split(","))
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.threads, args.repeat,
                                  args.blast_dir, (z, y, x), args.radiograph_size)))
        return
    cuda = torch.cuda.is_available()
    if args.radiograph:
        args.cases = ",".join(RADIOGRAPH_CASES)
    cases = []
    for case in args.cases.split(","):
        if case in RADIOGRAPH_CASES and RADIOGRAPH_CASES[case] == "cuda" and not cuda:
            print(f"{case}: cuda: not available (torch sees no CUDA device)", file=sys.stderr)
        elif case in BLAST_CASES and not (Path(args.blast_dir) / "model_1.pt").is_file():
            print(f"skip {case}: no BLAST-CT weights at {args.blast_dir}", file=sys.stderr)
        elif case in BLAST_CASES and BLAST_CASES[case][2] == "cuda" and not cuda:
            print(f"skip {case}: no CUDA device", file=sys.stderr)
        else:
            cases.append(case)
    # BLAST-CT cases take turns, one run per subprocess, so that large patches and tiles see
    # the same machine load (the host is shared); the others run their repeats in one go
    blast = [c for c in cases if c in BLAST_CASES]
    plan = [(c, args.repeat) for c in cases if c not in BLAST_CASES]
    plan += [(c, 1) for _ in range(args.repeat) for c in blast]
    runs: dict[str, list[dict[str, Any]]] = {}
    for case, repeat in plan:
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--device", args.device,
                               "--threads", str(args.threads), "--repeat", str(repeat),
                               "--blast-dir", args.blast_dir, "--blast-shape", args.blast_shape,
                               "--radiograph-size", str(args.radiograph_size)],
                              capture_output=True, text=True, cwd=REPO, check=False)
        if proc.returncode:
            print(f"{case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        runs.setdefault(case, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = []
    for case, got in runs.items():
        row: dict[str, Any] = dict(got[0])
        if case in BLAST_CASES:
            secs = [float(str(r["seconds"])) for r in got]
            row["runs"], row["seconds"] = secs, statistics.median(secs)
            row["peak_rss_mb"] = max(float(str(r["peak_rss_mb"])) for r in got)
        rows.append(row)
    print(f"{'case':<20} {'device':<7} {'thr':>3} {'s/study':>8} {'peak RSS MB':>12} "
          f"{'CUDA MB':>8}  detail")
    for r in rows:
        detail = ""
        if "timings" in r:
            t = r["timings"]
            detail = (f"pre {t['preprocess_s']:.2f} s, net {t['inference_s']:.2f} s, "
                      f"Grad-CAM {t['explain_s']:.2f} s")
        elif "note" in r:
            detail = f"{r['members']} member(s), {r['note']}"
        elif "ms_per_image" in r:
            detail = (f"{r['image']}: {r['ms_per_image']:.0f} ms/image, "
                      f"{r['images_per_s']:.2f} images/s (pre {r['preprocess_ms']:.0f} ms, "
                      f"net + decode {r['network_decode_ms']:.0f} ms)")
        print(f"{r['case']:<20} {r['device']:<7} {r['threads']:>3} {r['seconds']:>8.2f} "
              f"{r['peak_rss_mb']:>12.0f} {r.get('cuda_peak_mb', 0):>8.0f}  {detail}")
    if any(str(r["case"]).startswith("blast") for r in rows):
        print(json.dumps({"blast_ct": _summary(rows, cuda)}))
    if args.radiograph or any(c in RADIOGRAPH_CASES for c in args.cases.split(",")):
        print(json.dumps({"radiograph": _radiograph_summary(rows, cuda)}))


if __name__ == "__main__":
    main()
