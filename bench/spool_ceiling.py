"""What the spool's disk and memory allow, without DICOM: N processes each write files of one CT
slice's size (512 KiB by default) in 16 KiB pieces and fsync each, as the receive path does per
instance, and keep them all until the end of the run (as a spool does), with each file's pages
then dropped from the page cache (`drop`, the node's default,
`dicom.spool_drop_cache`) or kept (`keep`). Prints one line per round (files/s over all
processes, CPU ms per file) and a JSON summary: the ceiling a receiver that flushes every
instance can reach on this disk with 1, 2 and 4 writers, and what keeping written pages cached
costs once the page cache grows over memory never written before (on a virtual machine whose host
backs guest memory lazily, each such page costs a fault: docs/BENCHMARKS.md round 7).

    .venv/bin/python bench/spool_ceiling.py
    .venv/bin/python bench/spool_ceiling.py --files 600 --rounds 4 --dir /var/lib/infernode
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def writer(folder: str, files: int, size: int, drop: bool) -> tuple[float, float]:
    """Writes `files` files of `size` bytes under `folder`, each fsynced; (seconds, CPU s)."""
    data = os.urandom(size)
    os.makedirs(folder, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(files):
        fd = os.open(os.path.join(folder, f"{i}.dcm"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o640)
        try:
            view = memoryview(data)
            for start in range(0, size, 16384):
                os.write(fd, view[start:start + 16384])
            os.fsync(fd)
            if drop:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return time.perf_counter() - wall, time.process_time() - cpu


def round_(base: Path, writers: int, files: int, size: int, drop: bool) -> tuple[float, float]:
    """One round: `writers` processes at once; (files/s over all, CPU ms per file)."""
    folder = Path(tempfile.mkdtemp(prefix="round-", dir=base))
    go = folder / "go"
    try:
        # One process per writer (this script again, `--writer`), all started before any
        # writes: each waits for a go file.
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--writer", str(folder / str(k)), str(files), str(size),
             "drop" if drop else "keep", str(go)], stdout=subprocess.PIPE, text=True)
            for k in range(writers)]
        time.sleep(0.5)
        go.touch()
        results = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    finally:
        go.unlink(missing_ok=True)  # the files stay until the end of the run, as a spool's do
    cpu = sum(c for _, c in results)
    # each writer's own clock leaves process start-up out; the slowest one's is the round's
    slowest = max(s for s, _ in results)
    return writers * files / slowest, 1000 * cpu / (writers * files)


def main() -> None:
    if sys.argv[1:2] == ["--writer"]:
        folder, files, size, mode, go = sys.argv[2:7]
        while not os.path.exists(go):
            time.sleep(0.01)
        print(json.dumps(writer(folder, int(files), int(size), mode == "drop")))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder on the spool's file system (default: the system temp)")
    parser.add_argument("--files", type=int, default=400, help="files per writer and round")
    parser.add_argument("--size", type=int, default=512 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="spool-ceiling-", dir=args.dir))
    rates: dict[str, dict[int, list[float]]] = {m: {n: [] for n in args.writers}
                                                for m in ("drop", "keep")}
    cpu: dict[str, dict[int, list[float]]] = {m: {n: [] for n in args.writers}
                                              for m in ("drop", "keep")}
    try:
        for r in range(args.rounds):
            for n in args.writers:
                for mode in (("drop", "keep") if r % 2 == 0 else ("keep", "drop")):
                    rate, ms = round_(base, n, args.files, args.size, mode == "drop")
                    rates[mode][n].append(rate)
                    cpu[mode][n].append(ms)
                    print(f"# round {r} {mode} x{n}: {rate:.0f} files/s, CPU {ms:.2f} ms/file",
                          file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({
        "bench": "spool_ceiling", "size": args.size, "files": args.files,
        "rounds": args.rounds, "cpus": os.cpu_count(),
        "files_per_s": {m: {str(n): round(statistics.median(v), 1) for n, v in per.items()}
                        for m, per in rates.items()},
        "cpu_ms_per_file": {m: {str(n): round(statistics.median(v), 2) for n, v in per.items()}
                            for m, per in cpu.items()},
    }))


if __name__ == "__main__":
    main()
