"""Test helpers: write generated series to disk, optionally converted by DCMTK."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series


def ct_volume(shape: tuple[int, int, int] = (12, 40, 32), seed: int = 0) -> np.ndarray:
    """HU values with structure, so that a wrong slice order or flip changes the array."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    base[:, 0, 0] = np.arange(shape[0], dtype=np.int16) * 10
    return base


def build(
    volume: np.ndarray, spacing: Sequence[float], *, modality: str = "CT", **geometry: object
) -> list[Dataset]:
    return volume_series(
        volume, spacing, identity=StudyIdentity(), spec=SeriesSpec(modality=modality),
        **geometry,  # type: ignore[arg-type]
    )


def write(datasets: Sequence[Dataset], folder: Path) -> list[str]:
    return write_series(datasets, str(folder))


def convert(paths: Sequence[str], tool: Sequence[str], folder: Path) -> list[str]:
    """Runs a DCMTK converter (e.g. ["dcmcjpls"]) on every file into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / Path(path).name
        subprocess.run([*tool, path, str(target)], check=True, capture_output=True, timeout=60)
        out.append(str(target))
    return out
