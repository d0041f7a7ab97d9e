"""The README's first command: `infernode demo` on a fresh work folder."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_analyses_the_sample_studies_and_reports_them(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "infernode.cli", "demo", "--workdir", str(tmp_path / "demo"),
         "--timeout", "180"],
        capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, "COLUMNS": "220"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert all(f"DEMOACC00{i}" in out for i in (1, 2, 3, 4))
    assert "critical: ICH suspected" in out  # the subdural phantom
    assert "no ICH detected" in out  # the normal phantom
    assert "critical: acute infarct suspected" in out  # the MR stroke phantom
    assert "positive: infarct (infarct" in out  # with its core volume in mL
    assert "fracture suspected (positive: fracture)" in out  # the wrist radiograph
    assert "not routed" not in out
    if os.path.exists("/usr/sbin/Orthanc"):
        # SEG + SR + KOS, 3 overlay images (key slices, Grad-CAM) and the GSPS of the ICH study
        assert "demo-pacs: 7 delivered" in out
        # 32 images + SEG + SR + KOS + 3 overlay images + GSPS
        assert "PACS study DEMOACC001: 39 instances" in out
        assert "PACS study DEMOACC002: 33 instances" in out  # 32 images + SR
        # 32 b=0 + 32 b=1000 + 32 ADC images + SEG + SR + KOS + 1 overlay image + GSPS
        assert "PACS study DEMOACC003: 101 instances" in out
        # the radiograph + SR + KOS + 1 overlay image + GSPS
        assert "PACS study DEMOACC004: 5 instances" in out
