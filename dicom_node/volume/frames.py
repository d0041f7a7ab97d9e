"""Per-frame facts read from headers: where each stored frame lies and how to scale it.

Classic single-frame images carry the Image Plane module (PS3.3 C.7.6.2) at the top level.
Enhanced multi-frame images (Enhanced CT / MR, PS3.3 A.38, A.36) carry the same facts in
functional group macros (PS3.3 C.7.6.16): each macro is looked up first in the frame's item of the
Per-Frame Functional Groups Sequence, then in the Shared Functional Groups Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset

from dicom_node.volume import mosaic
from dicom_node.volume.errors import (
    EmptySeriesError,
    MissingGeometryError,
    MixedSeriesError,
    SeriesReadError,
)


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
    tile: int | None = None
    tiles_per_row: int = 1

    @property
    def key(self) -> tuple[str, int]:
        """(SOP Instance UID, 1-based frame number); a single-frame image is its frame 1."""
        return self.sop_instance_uid, self.frame_number or 1


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """Tolerant read of a multi-valued DS: None when absent or of the wrong multiplicity."""
    if value is None:
        return None
    try:
        items = [float(v) for v in value] if not isinstance(value, str | bytes) else []
    except (TypeError, ValueError):
        return None
    return tuple(items) if len(items) == count else None


def tolerant_float(value: Any, default: float | None) -> float | None:
    """Tolerant read of a DS: `default` when absent, empty or not a number."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value: Any, default: int) -> int | None:
    """Tolerant read of an IS: `default` when absent or empty, None when not an integer."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def frame_count(ds: Dataset) -> int:
    """Number of Frames (0028,0008), 1 when absent (PS3.3 C.7.6.6).

    Raises:
        MissingGeometryError: a value that is not a positive integer.
    """
    count = _int(ds.get("NumberOfFrames"), 1)
    if count is None or count < 1:
        raise MissingGeometryError(
            f"instance {ds.get('SOPInstanceUID', '?')}: Number of Frames is not a positive integer"
        )
    return count


def image_size(ds: Dataset) -> tuple[int, int]:
    """(Rows, Columns), Type 1 in the Image Pixel module (PS3.3 C.7.6.3).

    Raises:
        MissingGeometryError: absent or not positive integers.
    """
    rows, columns = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    if not rows or not columns or rows < 1 or columns < 1:
        raise MissingGeometryError(
            f"instance {ds.get('SOPInstanceUID', '?')}: Rows / Columns absent or invalid"
        )
    return rows, columns


def sop_instance_uid(ds: Dataset) -> str:
    """SOP Instance UID (Type 1, PS3.3 C.12.1).

    Raises:
        SeriesReadError: absent or empty.
    """
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    if not uid:
        raise SeriesReadError("an instance of the series has no SOP Instance UID")
    return uid


def _macro(groups: Sequence[Dataset | None], sequence: str) -> Dataset | None:
    """First item of functional group `sequence` in the first group that has it."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value) > 0:
            item: Dataset = group[sequence].value[0]
            return item
    return None


def _rescale(transform: Dataset | None, keyword: str, default: float) -> float:
    if transform is None:
        return default
    return tolerant_float(transform.get(keyword), default) or default


def is_enhanced(ds: Dataset) -> bool:
    """True for multi-frame images built from functional groups (PS3.3 C.7.6.16)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _mosaic_frames(index: int, ds: Dataset) -> list[FrameInfo]:
    """One frame per tile of a Siemens mosaic, placed by `mosaic.layout`."""
    if frame_count(ds) > 1:
        raise MissingGeometryError(f"mosaic {ds.SOPInstanceUID} has more than one frame")
    tiles = mosaic.layout(ds)
    base = _classic_frame(index, ds)
    return [replace(base, position=position, rows=tiles.rows, columns=tiles.columns, tile=t,
                    tiles_per_row=tiles.tiles_per_row)
            for t, position in enumerate(tiles.positions)]


def _classic_frame(index: int, ds: Dataset) -> FrameInfo:
    frames = frame_count(ds)
    rows, columns = image_size(ds)
    if frames > 1:
        raise MissingGeometryError(
            f"instance {ds.SOPInstanceUID} has {frames} frames without functional groups; "
            "per-frame positions are unknown"
        )
    spacing = _floats(ds.get("PixelSpacing"), 2)
    return FrameInfo(
        header_index=index,
        sop_instance_uid=sop_instance_uid(ds),
        frame_number=None,
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slice_thickness=tolerant_float(ds.get("SliceThickness"), None),
        rows=rows,
        columns=columns,
        slope=tolerant_float(ds.get("RescaleSlope"), 1.0) or 1.0,
        intercept=tolerant_float(ds.get("RescaleIntercept"), 0.0) or 0.0,
    )


def _enhanced_frames(index: int, ds: Dataset) -> list[FrameInfo]:
    count = frame_count(ds)
    rows, columns = image_size(ds)
    uid = sop_instance_uid(ds)
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
                sop_instance_uid=uid,
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
                slice_thickness=tolerant_float(measures.get("SliceThickness"), None)
                if measures is not None
                else None,
                rows=rows,
                columns=columns,
                slope=_rescale(transform, "RescaleSlope", 1.0),
                intercept=_rescale(transform, "RescaleIntercept", 0.0),
            )
        )
    return out


def frames_of(headers: Sequence[Dataset]) -> list[FrameInfo]:
    """Every stored frame of the series, in file order; a Siemens mosaic gives one frame per
    tile (`dicom_node.volume.mosaic`).

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
        elif mosaic.is_mosaic(ds):
            out.extend(_mosaic_frames(index, ds))
        else:
            out.append(_classic_frame(index, ds))
    if not out:
        raise EmptySeriesError("no image frames in the series")
    return out
