"""The node alone, for A/B work on its receive path: `infernode serve` (bench/ingest.py's `Node`:
SQLite, no web, no routing rules) receives the same generated CT (fresh UIDs every send) from
DCMTK storescu on N associations, several times; each send prints images/s and the node's user
and system CPU milliseconds per instance, and the whole machine's busy CPU milliseconds per
instance and idle share (what the senders and the kernel's threads take besides). Alternate
two checkouts, or two settings (`--node-setting`), to compare them.

    .venv/bin/python bench/ingest_node.py --associations 4 --sends 3
    .venv/bin/python bench/ingest_node.py --associations 1 --sends 2 --slices 300
    .venv/bin/python bench/ingest_node.py --node-setting spool_drop_cache=false
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _bench_ingest():  # bench/ is not a package: bench/ingest.py loaded by path
    spec = importlib.util.spec_from_file_location("bench_ingest", HERE / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = module
    spec.loader.exec_module(module)
    return module


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    bench = _bench_ingest()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--sends", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--node-processes", type=int, default=1)
    parser.add_argument("--node-upper-layer", default="native", choices=["native", "pynetdicom"])
    parser.add_argument("--node-setting", action="append", default=[], metavar="KEY=YAML",
                        type=bench.node_setting,
                        help="another `dicom:` setting of the node, e.g. spool_drop_cache=false")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    dicom = bench.node_settings(args.node_setting)
    os.environ["TCP_NODELAY"] = "1"
    work = Path(tempfile.mkdtemp(prefix="ingest-node-"))
    token = bench.new_token()
    files = bench.template(work / "template", args.slices, args.size, token)
    node = bench.Node(work / "node", "cpu", args.node_processes, args.node_upper_layer, dicom)
    node.start()
    try:
        copy, _ = bench.fresh_copy(files, token, work / "send")
        bench.send(node, copy, 1)  # uncounted: start-up work out of the measured sends
        print(f"node pid {node.pid}", flush=True)  # for perf / py-spy
        for k in range(args.sends):
            copy, _ = bench.fresh_copy(files, token, work / "send")
            user0, sys0 = cpu_seconds(node.pid)
            busy0, idle0 = bench.machine_seconds()
            seconds = bench.send(node, copy, args.associations)
            user1, sys1 = cpu_seconds(node.pid)
            busy1, idle1 = bench.machine_seconds()
            n = len(copy)
            print(f"send {k}: x{args.associations} {n / seconds:.1f} images/s, CPU per "
                  f"instance user {1000 * (user1 - user0) / n:.2f} ms, system "
                  f"{1000 * (sys1 - sys0) / n:.2f} ms; machine (senders, kernel threads "
                  f"and node) {1000 * (busy1 - busy0) / n:.2f} ms busy per instance, "
                  f"{100 * (idle1 - idle0) / (busy1 - busy0 + idle1 - idle0):.0f}% idle",
                  flush=True)
    finally:
        node.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
