"""Series summaries read from DICOM files, for explaining routing on files that did not come
through the node (`infernode route --explain FILE_OR_FOLDER`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from dicom_node.events import SeriesSummary, StudyReady

_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Modality", "BodyPartExamined",
         "SeriesDescription", "ProtocolName", "ImageType", "SliceThickness"]


def _files(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def studies_from_files(paths: Iterable[Path]) -> list[StudyReady]:
    """Group the DICOM files under `paths` (files or folders) into StudyReady values, one
    SeriesSummary per series; non-DICOM files are skipped. The AE titles are unknown (None)
    because the files did not arrive over an association."""
    series: dict[tuple[str, str], dict[str, Any]] = {}
    for path in _files(paths):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError):
            continue
        study_uid, series_uid = _text(ds.get("StudyInstanceUID")), _text(
            ds.get("SeriesInstanceUID"))
        if not study_uid or not series_uid:
            continue
        entry = series.setdefault((study_uid, series_uid), {
            "series_instance_uid": series_uid, "modality": _text(ds.get("Modality")),
            "body_part_examined": _text(ds.get("BodyPartExamined")),
            "series_description": _text(ds.get("SeriesDescription")),
            "protocol_name": _text(ds.get("ProtocolName")),
            "image_type": tuple(str(v) for v in (ds.get("ImageType") or ())),
            "sop_class_uids": [], "instance_count": 0, "slice_thickness": None,
            "calling_ae": None, "called_ae": None,
        })
        entry["instance_count"] += 1
        sop_class = _text(ds.get("SOPClassUID"))
        if sop_class and sop_class not in entry["sop_class_uids"]:
            entry["sop_class_uids"].append(sop_class)
        thickness = ds.get("SliceThickness")
        if entry["slice_thickness"] is None and thickness not in (None, ""):
            entry["slice_thickness"] = float(thickness)
    studies: dict[str, list[SeriesSummary]] = {}
    for (study_uid, _), entry in series.items():
        entry["sop_class_uids"] = tuple(entry["sop_class_uids"])
        studies.setdefault(study_uid, []).append(SeriesSummary(**entry))
    now = datetime.now(UTC)
    return [StudyReady(study_instance_uid=uid, series=tuple(members), completed_at=now)
            for uid, members in studies.items()]
