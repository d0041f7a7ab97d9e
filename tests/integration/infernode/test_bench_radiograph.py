"""Smoke test of the radiograph benchmark (bench/inference.py --radiograph): it times the demo
fracture detector on a phantom radiograph in a subprocess and reports ms per image, images per
second and, without a CUDA device, says so instead of timing one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]


def test_radiograph_mode_reports_ms_per_image_and_the_cuda_state() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "inference.py"), "--radiograph", "--repeat", "2",
         "--radiograph-size", "1024", "--threads", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["radiograph"]
    cpu = summary["fracture-cpu"]
    assert cpu["device"] == "cpu" and cpu["image"] == "1024 x 1024 float32"
    assert len(cpu["runs"]) == 2 and all(r > 0 for r in cpu["runs"])
    assert cpu["ms_per_image"] == sorted(cpu["runs"])[0] * 500 + sorted(cpu["runs"])[1] * 500
    assert cpu["preprocess_ms"] + cpu["network_decode_ms"] <= cpu["ms_per_image"] * 1.5
    if torch.cuda.is_available():
        assert summary["fracture-cuda"]["device"].startswith("cuda")
    else:
        assert summary["cuda"] == "not available" and "fracture-cuda" not in summary
        assert "fracture-cuda: cuda: not available" in done.stderr
