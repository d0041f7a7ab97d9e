"""The README's first command: `infernode demo` on a fresh work folder."""

from __future__ import annotations

import subprocess
import sys


def test_demo_sends_the_sample_studies_and_reports_them(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "infernode.cli", "demo", "--workdir", str(tmp_path / "demo"),
         "--timeout", "120"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DEMOACC001" in result.stdout and "DEMOACC002" in result.stdout
    assert "not complete" not in result.stdout
