"""The input facts a job records for monitoring: scanner, reconstruction kernel, slice
thickness, pixel spacing and intensity statistics of the pixels the model read, plus a hashed
accession number to match the site's final report to the job later.

Computed by the runner on the headers and the volume (or radiographs) it has already read, and
kept with the job's result (`MONITORING_KEY` of its summary, one JSON text): nothing is read
twice and no PHI is kept (the accession number only as a keyed hash).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

MONITORING_KEY = "monitoring"
"""Key of the job summary that holds the JSON text of `input_features`."""

NUMERIC = ("slice_thickness_mm", "pixel_spacing_mm", "intensity_mean", "intensity_std",
           "intensity_p05", "intensity_p95")
CATEGORICAL = ("scanner", "kernel")
FEATURES = CATEGORICAL + NUMERIC

_ACCESSION_DOMAIN = b"infernode/accession/v1|"
_SAMPLE = 200_000  # voxels: percentiles of a strided sample are stable and cheap


def accession_key(accession: str | None) -> str | None:
    """A hash of the accession number (stripped), so a final report is matched to its job
    without the accession number being stored; None when there is none."""
    text = (accession or "").strip()
    if not text:
        return None
    return hashlib.sha256(_ACCESSION_DOMAIN + text.encode()).hexdigest()[:40]


def _text(header: Dataset, keyword: str) -> str:
    value = header.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, str | bytes) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _number(header: Dataset, keyword: str, index: int = 0) -> float | None:
    value = header.get(keyword)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str | bytes) and hasattr(value, "__getitem__"):
            value = value[index]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def intensity_stats(pixels: np.ndarray | Sequence[np.ndarray]) -> dict[str, float | None]:
    """Mean, standard deviation and 5th / 95th percentiles of the pixels (a strided sample of
    at most 200 000 values of all arrays together); None values when there are none."""
    arrays = [pixels] if isinstance(pixels, np.ndarray) else list(pixels)
    flat = [np.asarray(a, dtype=np.float32).ravel() for a in arrays if np.size(a)]
    if not flat:
        return {"intensity_mean": None, "intensity_std": None, "intensity_p05": None,
                "intensity_p95": None}
    total = sum(f.size for f in flat)
    step = max(1, total // _SAMPLE)
    sample = np.concatenate([f[::step] for f in flat]).astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return {"intensity_mean": None, "intensity_std": None, "intensity_p05": None,
                "intensity_p95": None}
    p05, p95 = np.percentile(sample, [5, 95])
    return {"intensity_mean": round(float(sample.mean()), 3),
            "intensity_std": round(float(sample.std()), 3),
            "intensity_p05": round(float(p05), 3), "intensity_p95": round(float(p95), 3)}


def input_features(header: Dataset, pixels: np.ndarray | Sequence[np.ndarray], *,
                   score: float | None = None) -> dict[str, Any]:
    """The monitoring facts of one analysed input: `header` is a header of the series the
    model read, `pixels` what it read, `score` the model's study-level score (the highest class
    probability), when there is one."""
    manufacturer = _text(header, "Manufacturer") or "unknown"
    model = _text(header, "ManufacturerModelName") or "unknown"
    kernel = _text(header, "ConvolutionKernel") or "none"
    spacing = _number(header, "PixelSpacing")
    if spacing is None:
        spacing = _number(header, "ImagerPixelSpacing")
    out: dict[str, Any] = {
        "scanner": f"{manufacturer} {model}"[:64], "kernel": kernel[:32],
        "slice_thickness_mm": _number(header, "SliceThickness"),
        "pixel_spacing_mm": spacing,
        **intensity_stats(pixels),
        "accession": accession_key(_text(header, "AccessionNumber")),
    }
    if score is not None:
        out["score"] = round(float(score), 5)
    return out


def header_features(header: Dataset | None) -> dict[str, Any]:
    """The facts of a study that was not analysed: scanner and accession only."""
    if header is None:
        return {}
    manufacturer = _text(header, "Manufacturer") or "unknown"
    model = _text(header, "ManufacturerModelName") or "unknown"
    return {"scanner": f"{manufacturer} {model}"[:64],
            "accession": accession_key(_text(header, "AccessionNumber"))}


def encode(features: Mapping[str, Any]) -> str:
    """The summary value: compact JSON."""
    return json.dumps(dict(features), separators=(",", ":"), sort_keys=True)


def decode(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The features recorded in a job's result summary ({} when there are none)."""
    if not summary:
        return {}
    text = summary.get(MONITORING_KEY)
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
