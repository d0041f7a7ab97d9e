"""Per-frame facts read from headers: where each stored frame lies and how to scale it.

Classic single-frame images carry the Image Plane module (PS3.3 C.7.6.2) at the top level.
Enhanced multi-frame images (Enhanced CT / MR, PS3.3 A.38, A.36) carry the same facts in
functional group macros (PS3.3 C.7.6.16): each macro is looked up first in the frame's item of the
Per-Frame Functional Groups Sequence, then in the Shared Functional Groups Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from dicom_node.volume.errors import EmptySeriesError, MissingGeometryError, MixedSeriesError


@dataclass(frozen=True)
class FrameInfo:
    """One stored frame: its source instance, plane geometry, size and rescale."""

    header_index: int
    sop_instance_uid: str
    frame_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    rows: int
    columns: int
    slope: float
    intercept: float


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """Tolerant read of a multi-valued DS: None when absent or of the wrong multiplicity."""
    if value is None:
        return None
    try:
        items = [float(v) for v in value] if not isinstance(value, str | bytes) else []
    except (TypeError, ValueError):
        return None
    return tuple(items) if len(items) == count else None


def _float(value: Any, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _macro(groups: Sequence[Dataset | None], sequence: str) -> Dataset | None:
    """First item of functional group `sequence` in the first group that has it."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value) > 0:
            item: Dataset = group[sequence].value[0]
            return item
    return None


def is_enhanced(ds: Dataset) -> bool:
    """True for multi-frame images built from functional groups (PS3.3 C.7.6.16)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _classic_frame(index: int, ds: Dataset) -> FrameInfo:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise MissingGeometryError(
            f"instance {ds.SOPInstanceUID} has {frames} frames without functional groups; "
            "per-frame positions are unknown"
        )
    spacing = _floats(ds.get("PixelSpacing"), 2)
    return FrameInfo(
        header_index=index,
        sop_instance_uid=str(ds.SOPInstanceUID),
        frame_number=None,
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slice_thickness=_float(ds.get("SliceThickness"), None),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        slope=_float(ds.get("RescaleSlope"), 1.0) or 1.0,
        intercept=_float(ds.get("RescaleIntercept"), 0.0) or 0.0,
    )


def _enhanced_frames(index: int, ds: Dataset) -> list[FrameInfo]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) not in (0, count):
        raise MissingGeometryError(
            f"instance {ds.SOPInstanceUID}: {len(per_frame)} per-frame items for {count} frames"
        )
    out = []
    for f in range(count):
        groups = [per_frame[f] if per_frame else None, shared]
        position = _macro(groups, "PlanePositionSequence")
        orientation = _macro(groups, "PlaneOrientationSequence")
        measures = _macro(groups, "PixelMeasuresSequence")
        transform = _macro(groups, "PixelValueTransformationSequence")
        out.append(
            FrameInfo(
                header_index=index,
                sop_instance_uid=str(ds.SOPInstanceUID),
                frame_number=f + 1,
                position=_floats(position.get("ImagePositionPatient"), 3)  # type: ignore[arg-type]
                if position is not None
                else None,
                orientation=_floats(orientation.get("ImageOrientationPatient"), 6)
                if orientation is not None
                else None,
                pixel_spacing=_floats(measures.get("PixelSpacing"), 2)  # type: ignore[arg-type]
                if measures is not None
                else None,
                slice_thickness=_float(measures.get("SliceThickness"), None)
                if measures is not None
                else None,
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                slope=(_float(transform.get("RescaleSlope"), 1.0) if transform else 1.0) or 1.0,
                intercept=(_float(transform.get("RescaleIntercept"), 0.0) if transform else 0.0)
                or 0.0,
            )
        )
    return out


def frames_of(headers: Sequence[Dataset]) -> list[FrameInfo]:
    """Every stored frame of the series, in file order.

    Raises:
        EmptySeriesError: no headers.
        MixedSeriesError: more than one Series Instance UID or Frame of Reference UID.
        MissingGeometryError: a multi-frame instance without functional groups.
    """
    if not headers:
        raise EmptySeriesError("no instances given")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in headers}
    if len(series) > 1:
        raise MixedSeriesError(f"files from {len(series)} series: {sorted(series)}")
    references = {str(ds.get("FrameOfReferenceUID", "")) for ds in headers}
    if len(references) > 1:
        raise MixedSeriesError(f"{len(references)} frames of reference in one series")
    out: list[FrameInfo] = []
    for index, ds in enumerate(headers):
        if is_enhanced(ds):
            out.extend(_enhanced_frames(index, ds))
        else:
            out.append(_classic_frame(index, ds))
    if not out:
        raise EmptySeriesError("no image frames in the series")
    return out
