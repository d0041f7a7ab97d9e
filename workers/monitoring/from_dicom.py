"""Monitoring facts of DICOM studies on disk (validation cases for a reference): each series
read the way the node reads it (a volume through `dicom_node.volume.read_series`, a CR/DX image
through `dicom_node.radiograph.read_radiograph`) and described by `features.input_features`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.radiograph import RadiographReadError, read_radiograph
from dicom_node.volume import read_series
from workers.monitoring.features import input_features

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
_HEADER_TAGS = ["SeriesInstanceUID", "Modality", "SOPClassUID", "Rows"]


@dataclass
class Collected:
    """Feature records, and (series, reason) for each series that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _files(root: Path) -> Iterable[Path]:
    yield from sorted(p for p in root.rglob("*") if p.is_file())


def collect_features(root: Path, modalities: Iterable[str]) -> Collected:
    """The facts of every image series under `root` whose modality is in `modalities`
    (one record per series; per image for CR/DX)."""
    wanted = {m.upper() for m in modalities}
    series: dict[str, list[Path]] = {}
    modality: dict[str, str] = {}
    for path in _files(root):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except (InvalidDicomError, OSError):
            continue
        uid, mod = str(ds.get("SeriesInstanceUID", "")), str(ds.get("Modality", "")).upper()
        if uid and mod in wanted and ds.get("Rows"):
            series.setdefault(uid, []).append(path)
            modality[uid] = mod
    out = Collected()
    for uid, files in sorted(series.items()):
        if modality[uid] in RADIOGRAPH_MODALITIES:
            for path in files:
                try:
                    image = read_radiograph(str(path))
                except RadiographReadError as exc:
                    out.skipped.append((uid, exc.reason))
                    continue
                header = pydicom.dcmread(path, stop_before_pixels=True)
                out.records.append(input_features(header, [image.pixels]))
            continue
        try:
            volume = read_series([str(p) for p in files])
        except DicomPermanentError as exc:
            out.skipped.append((uid, str(getattr(exc, "reason", "unreadable_series"))))
            continue
        out.records.append(input_features(volume.headers[0], volume.voxels))
    return out
