"""Runs the DCMTK command line tools as real DICOM peers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series

DCMTK_BIN = Path("/usr/bin")
"""DCMTK's own tools: pynetdicom installs same-named console scripts (storescu, echoscu...)
into the virtualenv, so the tools are never looked up on PATH."""


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs a DCMTK tool (by name, from DCMTK_BIN) and captures its output."""
    tool = DCMTK_BIN / args[0]
    if not tool.exists():
        import pytest

        pytest.skip(f"DCMTK tool {args[0]} is not installed (Debian dcmtk): run scripts/setup.sh")
    return subprocess.run([str(tool), *args[1:]], capture_output=True, text=True,
                          timeout=timeout, check=False)


def echoscu(port: int, *, calling: str = "INFERNODE_SCU", called: str = "INFERNODE"):
    return run(["echoscu", "-v", "-aet", calling, "-aec", called, "127.0.0.1", str(port)])


def storescu(port: int, files: list[Path], *, calling: str = "INFERNODE_SCU",
             called: str = "INFERNODE", extra: list[str] | None = None):
    return run(
        ["storescu", "-v", "-aet", calling, "-aec", called, *(extra or []),
         "127.0.0.1", str(port), *map(str, files)],
        timeout=120,
    )


def ct_series(folder: Path, slices: int = 6, size: int = 64, seed: int = 0) -> list[Path]:
    """A small CT series written as files; returns the paths."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(-100, 200, size=(slices, size, size)).astype(np.int16)
    datasets = volume_series(volume, (2.0, 0.5, 0.5), identity=StudyIdentity(),
                             spec=SeriesSpec())
    return [Path(p) for p in write_series(datasets, str(folder))]


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its preamble and file meta group."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    # (0002,0000) UL group length: tag(4) VR(2) len(2) value(4)
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]
