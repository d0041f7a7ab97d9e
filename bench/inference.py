"""Benchmark: seconds per study for the demo ICH model (300 x 512 x 512) and BLAST-CT on a crop.

Each case runs in a fresh subprocess so that peak memory (max RSS; CUDA max allocated) belongs
to that case alone. Usage:

    python bench/inference.py [--threads 2] [--device cpu|cuda|auto] [--repeat 3]
                              [--blast-dir ../shared/models/blast-ct-v1] [--blast-models 1]
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
from typing import TYPE_CHECKING

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


def run_case(case: str, device: str, threads: int, repeat: int, blast_dir: str,
             blast_models: int) -> dict[str, object]:
    import torch

    torch.set_num_threads(threads)
    from inference.registry import ModelRegistry

    out: dict[str, object] = {"case": case, "threads": threads}
    if case.startswith("ich"):
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
        import numpy as np

        from inference.phantoms import PhantomSpec, make_head_ct

        reg = ModelRegistry([Path(blast_dir)], device=device, warmup=False)
        pipe = reg.get("blast-ct")
        ph = make_head_ct(PhantomSpec(shape=(100, 180, 150), pixel_mm=1.0, slice_mm=1.0,
                                      subtypes=("intraparenchymal",), seed=21))
        c = [int(np.mean(ix)) for ix in np.nonzero(ph.masks["intraparenchymal"])]
        roi = tuple(slice(v - 15, v + 15) for v in c)
        t = time.perf_counter()
        pred = pipe.predict(ph.volume, roi=roi, n_models=blast_models)  # type: ignore[call-arg]
        out["seconds"] = time.perf_counter() - t
        out["members"] = blast_models
        out["note"] = "one 30^3 mm output patch (110^3 input)"
        out["device"] = str(reg.device)
        del pred
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and device != "cpu":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--blast-dir", default=str(REPO.parent / "shared/models/blast-ct-v1"))
    ap.add_argument("--blast-models", type=int, default=1)
    ap.add_argument("--cases", default="ich-thin,ich-thick,blast-crop")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.threads, args.repeat,
                                  args.blast_dir, args.blast_models)))
        return
    rows = []
    for case in args.cases.split(","):
        if case == "blast-crop" and not (Path(args.blast_dir) / "model_1.pt").is_file():
            print(f"skip {case}: no BLAST-CT weights at {args.blast_dir}", file=sys.stderr)
            continue
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--device", args.device,
                               "--threads", str(args.threads), "--repeat", str(args.repeat),
                               "--blast-dir", args.blast_dir,
                               "--blast-models", str(args.blast_models)],
                              capture_output=True, text=True, cwd=REPO, check=False)
        if proc.returncode:
            print(f"{case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'case':<12} {'device':<7} {'thr':>3} {'s/study':>8} {'peak RSS MB':>12} "
          f"{'CUDA MB':>8}  detail")
    for r in rows:
        detail = ""
        if "timings" in r:
            t = r["timings"]
            detail = (f"pre {t['preprocess_s']:.2f} s, net {t['inference_s']:.2f} s, "
                      f"Grad-CAM {t['explain_s']:.2f} s")
        elif "note" in r:
            detail = f"{r['members']} member(s), {r['note']}"
        print(f"{r['case']:<12} {r['device']:<7} {r['threads']:>3} {r['seconds']:>8.2f} "
              f"{r['peak_rss_mb']:>12.0f} {r.get('cuda_peak_mb', 0):>8.0f}  {detail}")


if __name__ == "__main__":
    main()
