"""Reads the files of one series into a `SeriesVolume` with its geometry in LPS.

Two passes: headers first (no pixels), so that every geometric problem is found before anything
is decoded; then the pixels, decoded straight into the volume in slice order. Works for classic
single-frame CT/MR images (PS3.3 A.3, A.4), Siemens MR mosaics, and Enhanced CT/MR multi-frame
images (A.38, A.36), whole or a chosen subset of their frames.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_node.volume import mosaic
from dicom_node.volume.errors import (
    EmptySeriesError,
    GantryTiltError,
    MissingGeometryError,
    MixedSizeError,
    SeriesReadError,
)
from dicom_node.volume.frames import FrameInfo, frame_count, frames_of, tolerant_float
from dicom_node.volume.geometry import StackGeometry, analyse_stack, untilt
from dicom_node.volume.model import ReadOptions, SeriesVolume, SliceRef
from dicom_node.volume.pixels import check_greyscale, read_frames


def read_headers(paths: Sequence[str | Path]) -> list[Dataset]:
    """Each file's data set without Pixel Data (PS3.10 file, read tolerantly).

    Raises:
        SeriesReadError: a file is missing or is not DICOM.
    """
    headers: list[Dataset] = []
    for index, path in enumerate(paths):
        try:
            headers.append(dcmread(path, stop_before_pixels=True))
        except (InvalidDicomError, OSError) as exc:
            raise SeriesReadError(
                f"file {index} of the series is not readable DICOM ({type(exc).__name__})"
            ) from exc
    return headers


def _common_size(frames: Sequence[FrameInfo]) -> tuple[int, int, float, float]:
    sizes = {(f.rows, f.columns) for f in frames}
    if len(sizes) > 1:
        raise MixedSizeError(f"{len(sizes)} different image sizes (Rows x Columns) in the series")
    if any(f.pixel_spacing is None for f in frames):
        raise MissingGeometryError("slice(s) without Pixel Spacing")
    spacings = np.asarray([f.pixel_spacing for f in frames], dtype=float)
    if np.ptp(spacings, axis=0).max() > 1e-4 * spacings.max():
        raise MixedSizeError("Pixel Spacing differs between slices")
    rows, columns = sizes.pop()
    return rows, columns, float(spacings[0, 0]), float(spacings[0, 1])


def _fallback_step(headers: Sequence[Dataset], frames: Sequence[FrameInfo]) -> float | None:
    between = tolerant_float(headers[0].get("SpacingBetweenSlices"), None)
    if between:
        return abs(between)
    return frames[0].slice_thickness


def _decode(
    paths: Sequence[str | Path], headers: Sequence[Dataset], frames: Sequence[FrameInfo],
    order: Sequence[int], shape: tuple[int, int], rescale: bool,
) -> np.ndarray:
    """Stored values (rescaled when `rescale`) of every frame, placed in slice order; a mosaic
    frame is cut out of its stored frame by its tile number."""
    slot = {index: k for k, index in enumerate(order)}
    by_file: dict[int, list[int]] = {}
    for index, frame in enumerate(frames):
        by_file.setdefault(frame.header_index, []).append(index)
    voxels = np.empty((len(frames), *shape), dtype=np.float32)
    # Files in the order of their first slice: sequential reads for a sorted spool folder.
    for header_index in sorted(by_file, key=lambda h: min(slot[i] for i in by_file[h])):
        stored = read_frames(paths[header_index], frame_count(headers[header_index]))
        for index in by_file[header_index]:
            frame = frames[index]
            target = voxels[slot[index]]
            plane = stored[(frame.frame_number or 1) - 1]
            if frame.tile is not None:
                plane = mosaic.tile(plane, frame.tiles_per_row, frame.tile)
            target[...] = plane
            if rescale and (frame.slope != 1.0 or frame.intercept != 0.0):
                target *= np.float32(frame.slope)
                target += np.float32(frame.intercept)
    return voxels


def _keep(frames: list[FrameInfo], wanted: Collection[tuple[str, int]] | None
          ) -> list[FrameInfo]:
    """The frames named in `wanted` ((SOP Instance UID, frame number) pairs), all when None.

    Raises:
        EmptySeriesError: none of the named frames is in the files.
    """
    if wanted is None:
        return frames
    chosen = set(wanted)
    kept = [f for f in frames if f.key in chosen]
    if not kept:
        raise EmptySeriesError(f"none of the {len(chosen)} requested frame(s) is in the files")
    return kept


def _check_tilt(geometry: StackGeometry, options: ReadOptions) -> bool:
    """True when the stack must be resampled; raises when tilt is present but not allowed."""
    if geometry.tilt_deg <= options.tilt_tolerance_deg:
        return False
    if not options.correct_tilt:
        raise GantryTiltError(
            f"gantry tilt of {geometry.tilt_deg:.2f} degrees; resampling not allowed",
            geometry.tilt_deg,
        )
    return True


def read_series(
    paths: Sequence[str | Path], options: ReadOptions | None = None, *,
    frames: Collection[tuple[str, int]] | None = None,
) -> SeriesVolume:
    """Reads one series (its files, in any order) into a volume sorted along the slice normal.

    `frames`, when given, names the frames to read as (SOP Instance UID, 1-based frame number)
    pairs (a single-frame image, a mosaic included, is its frame 1): the b=1000 frames of an
    Enhanced MR diffusion instance whose other frames are b=0 images at the same positions, say
    (PS3.3 C.8.13.5.9). Siemens mosaics are unpacked into their slices (`volume.mosaic`).

    CT values become Hounsfield units through Rescale Slope / Intercept (PS3.3 C.11.1.1.2,
    per frame for Enhanced CT, C.7.6.16.2.9); other modalities keep stored values.

    Raises:
        SeriesReadError subclasses, each with a `reason`: EmptySeriesError, MixedSeriesError,
        MissingGeometryError, MixedOrientationError, MixedSizeError, DuplicatePositionError,
        SliceGapError, NonUniformSpacingError, GantryTiltError, UnsupportedPixelDataError.
    """
    options = options or ReadOptions()
    headers = read_headers(paths)
    infos = _keep(frames_of(headers), frames)
    rows, columns, row_spacing, column_spacing = _common_size(infos)
    for ds in headers:
        check_greyscale(ds)
    geometry = analyse_stack(
        [f.position for f in infos],
        [f.orientation for f in infos],
        options,
        _fallback_step(headers, infos),
    )
    if len(infos) < options.min_slices:
        raise MissingGeometryError(
            f"{len(infos)} slice(s); at least {options.min_slices} needed for a volume"
        )
    resample = _check_tilt(geometry, options)
    modality = str(headers[0].get("Modality", ""))
    rescale = modality == "CT"
    voxels = _decode(paths, headers, infos, geometry.order, (rows, columns), rescale)
    if resample:
        shift_px = (geometry.shift_mm[0] / column_spacing, geometry.shift_mm[1] / row_spacing)
        voxels = untilt(voxels, shift_px, fill=float(voxels.min()))

    # Headers in the order their first slice appears, so header 0 is the first slice's.
    first_seen: dict[int, int] = {}
    for index in geometry.order:
        first_seen.setdefault(infos[index].header_index, len(first_seen))
    refs = tuple(
        SliceRef(
            infos[i].sop_instance_uid, infos[i].frame_number, first_seen[infos[i].header_index],
            infos[i].tile,
        )
        for i in geometry.order
    )
    ordered_headers = tuple(
        headers[h] for h, _ in sorted(first_seen.items(), key=lambda item: item[1])
    )
    direction = np.column_stack([geometry.normal, geometry.column, geometry.row])
    first = headers[0]
    return SeriesVolume(
        voxels=voxels,
        origin=(float(geometry.origin[0]), float(geometry.origin[1]), float(geometry.origin[2])),
        spacing=(geometry.step_mm, row_spacing, column_spacing),
        direction=direction,
        slice_refs=refs,
        headers=ordered_headers,
        modality=modality,
        units="HU" if rescale else "stored",
        series_instance_uid=str(first.get("SeriesInstanceUID", "")),
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.FrameOfReferenceUID)
        if "FrameOfReferenceUID" in first
        else None,
        tilt_deg=geometry.tilt_deg,
        tilt_corrected=resample,
    )
