"""DICOM Segmentation (PS3.3 A.51) of mask findings: BINARY, one segment per finding class.

Segments are numbered from 1 in the order the findings are given, after dropping findings
with no voxel (an empty segment has nothing to show; the SR still reports it as absent).
Empty frames are omitted (highdicom's ``omit_empty_frames``): each remaining frame carries its
own Plane Position and Derivation Image references (PS3.3 C.7.6.16), so viewers place frames by
position and source image, never by index. Works for a series of single-frame images, one
multi-frame image, or a single 2D radiograph.

A multi-frame source read in part (the b=1000 frames of an Enhanced MR diffusion image whose
b=0 frames lie at the same positions) cannot be handed to highdicom as is: it refuses a source
with two frames at one plane position, because a SEG frame's position would not say which of
them it was derived from. The masks of such a source hold voxels only on the frames the volume
was read from (``dicom_node.volume.sources.on_source_frames``), so the SEG is built from those
frames' own plane positions and each frame then references exactly the source frame its mask
lies on (Derivation Image functional group, PS3.3 C.7.6.16.2.6 and A.51.5; its Referenced Frame
Number is required when the reference is to some frames of a multi-frame image, Table 10-3).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.valuerep import DS

from dicom_node.encode.common import (
    concept,
    device_serial_number,
    finish,
    seg_algorithm_identification,
    series_description,
    tracking,
)
from dicom_node.encode.source import has_valid_value, tolerant_first
from dicom_node.encode.types import EncodeContext, MaskFinding

log = logging.getLogger(__name__)

_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (0, 130, 200),  # blue
    (255, 225, 25),  # yellow
    (145, 30, 180),  # purple
    (70, 240, 240),  # cyan
)
"""Recommended display colours, in segment order, when a finding names none."""


def frame_count(sources: Sequence[Dataset]) -> int:
    """Frames of the source: instances of a series, or frames of one multi-frame image."""
    if len(sources) == 1:
        return int(sources[0].get("NumberOfFrames", 1))
    return len(sources)


def segmented_findings(findings: Sequence[MaskFinding]) -> list[MaskFinding]:
    """The findings that become segments (those with at least one voxel), in segment order:
    segment number ``i + 1`` is ``segmented_findings(findings)[i]``."""
    return [f for f in findings if f.positive]


def _description(
    ctx: EncodeContext, number: int, finding: MaskFinding
) -> hd.seg.SegmentDescription:
    tracking_id, tracking_uid = tracking(ctx, finding.label)
    rgb = finding.display_rgb or _PALETTE[(number - 1) % len(_PALETTE)]
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=finding.label,
        segmented_property_category=concept(finding.property_category),
        segmented_property_type=concept(finding.property_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=seg_algorithm_identification(ctx),
        tracking_id=tracking_id,
        tracking_uid=tracking_uid,
        anatomic_regions=[concept(finding.finding_site)],
        display_color=hd.color.CIELabColor.from_rgb(*rgb),
    )


def encode_seg(
    sources: Sequence[Dataset], findings: Sequence[MaskFinding], ctx: EncodeContext
) -> hd.seg.Segmentation:
    """A BINARY Segmentation instance of the mask findings on `sources` (PS3.3 A.51).

    ``finding.mask[k]`` must belong to frame ``k`` of the sources (``sources[k]`` for a series
    of single-frame images). Pure: UIDs and time come from `ctx`.

    Raises:
        ValueError: no finding has a voxel, or a mask does not match the sources' geometry.
    """
    segmented = segmented_findings(findings)
    if not segmented:
        raise ValueError("no mask finding has a voxel; a SEG needs at least one segment")
    original = sources[0]
    sources = _placeable(tolerant_first(sources), segmented[0])
    expected = (frame_count(sources), int(sources[0].Rows), int(sources[0].Columns))
    for finding in segmented:
        if finding.frames.shape != expected:
            raise ValueError(
                f"mask of {finding.label!r} has shape {finding.frames.shape}, "
                f"sources give {expected}"
            )
    # Stacked-segments layout (frames, rows, columns, segments): segments may overlap.
    pixels = np.stack([f.frames for f in segmented], axis=-1).astype(np.uint8)
    read = _read_frames(sources[0], pixels) if len(sources) == 1 else None
    when = ctx.clock()
    seg = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixels if read is None else pixels[read.indices],
        plane_positions=None if read is None else read.positions,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(ctx, i + 1, f) for i, f in enumerate(segmented)],
        series_instance_uid=ctx.uids.uid("seg.series"),
        series_number=ctx.series_numbers.seg,
        sop_instance_uid=ctx.uids.uid("seg.sop"),
        instance_number=1,
        manufacturer=ctx.algorithm.manufacturer,
        manufacturer_model_name=ctx.algorithm.model_name,
        software_versions=ctx.algorithm.version,
        device_serial_number=device_serial_number(ctx),
        content_description=series_description(ctx, "segmentation", sources[0]),
        content_label=f"AI_{ctx.pipeline.value.upper()}"[:16],
        omit_empty_frames=True,
        series_description=series_description(ctx, "SEG", sources[0]),
        content_creator_name=None,
        specific_character_set=None,  # written by finish
    )
    if read is not None:
        _reference_read_frames(seg, read)
    # Content Creator's Name (0070,0084) is Type 2 in the Segmentation Image module (PS3.3
    # C.8.20.2, via Content Identification C.10.9); highdicom omits it when None. No person
    # created the content: present and empty.
    seg.ContentCreatorName = None
    laterality = _laterality(sources[0])
    if laterality:
        seg.Laterality = laterality
    # highdicom draws a random Dimension Organization UID; a re-run must give the same object.
    organization = ctx.uids.uid("seg.dimension-organization")
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = organization
    if "FrameOfReferenceUID" not in seg:
        _without_frame_of_reference(seg, sources[0])
    finish(seg, ctx, when, sources[0], original)
    return seg


@dataclass(frozen=True)
class _ReadFrames:
    """The frames of a multi-frame source that carry mask voxels: their 0-based indices, their
    plane positions (as highdicom takes them) and their positions as coordinates (mm)."""

    indices: np.ndarray
    positions: list[hd.PlanePositionSequence]
    coordinates: np.ndarray


def _frame_positions(source: Dataset) -> list[hd.PlanePositionSequence] | None:
    """Plane Position (Patient) of each frame of a multi-frame image in a Frame of Reference,
    None for any other source (single frame, projection, slide, no per-frame positions)."""
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if frames < 2 or "FrameOfReferenceUID" not in source:
        return None
    per_frame = source.get("PerFrameFunctionalGroupsSequence")
    if not per_frame or any("PlanePositionSequence" not in item for item in per_frame):
        return None
    return list(hd.utils.get_plane_positions_of_image(source))


def _coordinates(positions: Sequence[hd.PlanePositionSequence]) -> np.ndarray:
    return np.array([[float(v) for v in p[0].ImagePositionPatient] for p in positions])


def _read_frames(source: Dataset, pixels: np.ndarray) -> _ReadFrames | None:
    """The frames with voxels when `source` is one multi-frame image with several frames at one
    plane position (None otherwise: highdicom places the frames itself).

    Raises:
        ValueError: two frames at one position both carry voxels; which source frame a SEG
            frame there derives from would be ambiguous.
    """
    positions = _frame_positions(source)
    if positions is None:
        return None
    coordinates = _coordinates(positions)
    if len(_distinct(coordinates)) == len(coordinates):
        return None
    indices = np.flatnonzero(pixels.any(axis=(1, 2, 3)))
    if len(_distinct(coordinates[indices])) != len(indices):
        raise ValueError("mask voxels on two frames of the source at one plane position; "
                         "the SEG cannot say which frame it derives from")
    return _ReadFrames(indices, [positions[i] for i in indices], coordinates[indices])


def _distinct(coordinates: np.ndarray) -> set[tuple[float, ...]]:
    """Positions as compared: to 1 µm, far below any slice spacing."""
    return {tuple(np.round(c, 3)) for c in coordinates}


def _reference_read_frames(seg: hd.seg.Segmentation, read: _ReadFrames) -> None:
    """Makes each SEG frame reference the one source frame its mask came from.

    highdicom matched each SEG frame to every source frame at its position (the read frame and
    the unread ones beside it, e.g. b=0 and b=1000); the frame it derives from is the read one
    nearest in position."""
    for item in seg.PerFrameFunctionalGroupsSequence:
        position = np.array([float(v) for v in
                             item.PlanePositionSequence[0].ImagePositionPatient])
        distances = np.linalg.norm(read.coordinates - position, axis=1)
        nearest = int(np.argmin(distances))
        if distances[nearest] > 1e-3:  # highdicom copies the source frame's position
            raise ValueError("a SEG frame lies at no position of the frames it was drawn on")
        derivation = item.DerivationImageSequence[0]
        reference = derivation.SourceImageSequence[0]
        reference.ReferencedFrameNumber = int(read.indices[nearest]) + 1
        derivation.SourceImageSequence = [reference]


def _laterality(source: Dataset) -> str | None:
    """Laterality (0020,0060) of the SEG series: the source's series Laterality, else its
    Image Laterality, when R or L. General Series Laterality is Type 2C, required for a paired
    body part when no image-level laterality is sent (PS3.3 C.7.3.1); the SEG has none."""
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(source.get(keyword, "") or "").strip().upper()
        if value in ("R", "L"):
            return value
    return None


_SLICE_THICKNESS = Tag(0x0018, 0x0050)
_PLANE_ATTRIBUTES = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


def _placeable(sources: list[Dataset], finding: MaskFinding) -> list[Dataset]:
    """Checks that the SEG frames can be placed on the sources, and gives highdicom a Slice
    Thickness it can read.

    Image Position / Orientation (Patient) and Pixel Spacing are Type 1 in the Image Plane
    module (PS3.3 C.7.6.2) and the Frame of Reference is mandatory for a series; Slice Thickness
    is Type 2 there, so may be empty, but the SEG's Pixel Measures macro needs a value (PS3.3
    C.7.6.16.2.1): it is then the finding's voxel volume over the pixel area (the slice spacing
    the mask was measured on), set on the copy of the first source that highdicom reads.

    Raises:
        ValueError: a series without Frame of Reference, or plane attributes absent.
    """
    first = sources[0]
    multi = len(sources) > 1 or int(first.get("NumberOfFrames", 1) or 1) > 1
    if "FrameOfReferenceUID" not in first or not first.FrameOfReferenceUID:
        if multi:
            raise ValueError("source series has no Frame of Reference UID; SEG frames "
                             "cannot be placed (PS3.3 C.7.4.1)")
        return sources
    if "PerFrameFunctionalGroupsSequence" in first:
        return sources  # Enhanced images: highdicom reads the functional groups
    missing = [k for k in _PLANE_ATTRIBUTES if not first.get(k)]
    if missing:
        raise ValueError(f"source image lacks {', '.join(missing)}; SEG frames cannot be "
                         "placed (PS3.3 C.7.6.2)")
    if has_valid_value(first, "SliceThickness"):
        return sources
    rows, columns = (float(v) for v in first.PixelSpacing)
    log.warning("source %s: SliceThickness absent or invalid; SEG uses the measured spacing",
                first.get("SOPInstanceUID", "?"))
    thickness = DS(finding.voxel_volume_mm3 / (rows * columns), auto_format=True)
    # A new element: the copy shares the source's element objects, which must not change.
    first[_SLICE_THICKNESS] = DataElement(_SLICE_THICKNESS, "DS", thickness)
    if "SpacingBetweenSlices" in first and not has_valid_value(first, "SpacingBetweenSlices"):
        del first.SpacingBetweenSlices
    return sources


def _without_frame_of_reference(seg: hd.seg.Segmentation, source: Dataset) -> None:
    """Fixes what highdicom writes for a projection image (e.g. DX), which has no Frame of
    Reference: Patient Orientation is then Type 2C in the General Image module (PS3.3
    C.7.6.1), copied from the source; and the Pixel Measures macro applies only with a Frame
    of Reference (PS3.3 A.51.5), while highdicom writes one without Slice Thickness that its
    own reader rejects."""
    seg.PatientOrientation = source.get("PatientOrientation", "")
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PixelMeasuresSequence" in shared:
        del shared.PixelMeasuresSequence
