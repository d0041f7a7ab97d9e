"""Evaluation cases from DICOM: stroke (diffusion series + reference SEG) and fracture
(radiographs + reference TID 1500 SR).

``infernode models evaluate stroke --layout dicom-seg`` reads a folder with one sub-folder per
case. Each case holds the study's MR diffusion images as DICOM files (the DWI with its ADC map,
or with the b=0 images; any file names, sub-folders allowed) and exactly one reference DICOM
Segmentation (PS3.3 A.51) with one segment, the infarct, whose frames lie on the DWI's slices.

The case is read the way the node reads a study: the stroke selector
(:func:`workers.pipelines.stroke.select_stroke`) picks the series,
:func:`dicom_node.volume.read_series` reads them, and every role after the DWI is brought onto
the DWI's grid (resampled by patient coordinates, registered rigidly across Frames of
Reference). The SEG's frames are placed on the DWI's slices by the instance they reference
(Derivation Image / Source Image, PS3.3 C.7.6.16.2.6), else by their Image Position (Patient)
(Plane Position, C.7.6.16.2.3); a FRACTIONAL segment counts where it is at least half its
maximum.

``infernode models evaluate fracture --layout dicom-sr`` reads a folder with one sub-folder per
case: CR/DX images and exactly one reference TID 1500 SR (PS3.16) whose measurement groups
(125007) mark the fractures. A region is a direct SCOORD child of a group (TID 1410's Image
Region), referencing its image by an IMAGE child (PS3.3 C.18.6); its box is the bounding box of
a POLYLINE / POLYGON of at least three points, of a CIRCLE or of an ELLIPSE, clipped to the
image. SCOORDs below a group's measurements (a length's line) are not regions. The fracture
selector (:func:`workers.pipelines.fracture.select_fracture`) picks the images, as the node
does; an image without a region is a negative. Headers and the SR are checked for every case
before any pixels are read, so a bad case fails the run at once, named.

This module lives in ``workers`` because it needs both ``dicom_node`` and ``inference``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.radiograph import RadiographReadError, find_body_part, read_radiograph
from dicom_node.selection import study_facts
from dicom_node.volume import SeriesVolume
from inference.errors import InputError
from inference.evaluation.detection import Box, DetectionCase
from inference.evaluation.stroke import SegmentationCase
from inference.types import Radiograph, StudyInput
from workers.pipelines.fracture import select_fracture
from workers.pipelines.runner import model_volume, read_roles
from workers.pipelines.stroke import STROKE, model_options, select_stroke

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
"""Segmentation Storage SOP Class (PS3.4 B.5)."""


class DicomSegCaseError(InputError):
    """A case folder that cannot be evaluated; the message names the case and the reason."""


def _case_dirs(folder: Path, error: type[InputError]) -> list[Path]:
    """The case sub-folders of ``folder`` in name order; `error` when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise error(f"{root}: not a folder")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise error(f"{root}: no case sub-folders")
    return dirs


def dicom_seg_cases(folder: Path) -> list[SegmentationCase]:
    """One case per sub-folder of ``folder`` (name order), read by :func:`dicom_seg_case`.

    Raises:
        DicomSegCaseError: ``folder`` has no case sub-folder, or a case cannot be read.
    """
    return [dicom_seg_case(d) for d in _case_dirs(folder, DicomSegCaseError)]


def dicom_seg_case(case_dir: Path) -> SegmentationCase:
    """The DWI (+ ADC or b=0) volumes and the reference SEG's mask on the DWI's grid.

    Raises:
        DicomSegCaseError: no DICOM files, not exactly one SEG, a SEG of more than one
            segment, no usable diffusion series (with the selector's reasons), a series that
            cannot be read, or SEG frames that match no DWI slice.
    """
    name = case_dir.name
    seg, images = _split(case_dir, name)
    headers = [h for _, h in images]
    selection = select_stroke(study_facts(headers))
    if not selection.ok:
        reasons = "; ".join(r for v in selection.verdicts for r in v.reasons) or "none"
        raise DicomSegCaseError(f"case {name}: no usable MR diffusion input ({reasons})")
    try:
        volumes = read_roles(STROKE, selection, [f for f, _ in images], headers)
    except DicomPermanentError as exc:
        raise DicomSegCaseError(f"case {name}: series cannot be read: {exc}") from exc
    dwi = volumes[STROKE.primary_role]
    truth = seg_on_grid(seg, dwi, name)
    options: dict[str, Any] = dict(model_options(study_facts(headers), selection))
    inp = StudyInput({role: model_volume(v) for role, v in volumes.items()})
    return SegmentationCase(name, inp, truth, options)


def _split(case_dir: Path, name: str) -> tuple[Dataset, list[tuple[str, Dataset]]]:
    """The case's one SEG (with pixels) and its image files with their headers."""
    files = sorted(p for p in case_dir.rglob("*") if p.is_file())
    segs: list[Dataset] = []
    images: list[tuple[str, Dataset]] = []
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue  # not DICOM: notes, checksums and the like
        if str(ds.get("SOPClassUID", "")) == SEG_STORAGE:
            segs.append(dcmread(path))
        elif "SOPClassUID" in ds:
            images.append((str(path), ds))
    if not images:
        raise DicomSegCaseError(f"case {name}: no DICOM images")
    if len(segs) != 1:
        raise DicomSegCaseError(f"case {name}: {len(segs)} DICOM SEG objects, expected one")
    segments = segs[0].get("SegmentSequence", [])
    if len(segments) != 1:
        raise DicomSegCaseError(f"case {name}: the SEG has {len(segments)} segments, "
                                "expected one (the infarct)")
    return segs[0], images


def _frame_items(seg: Dataset, k: int) -> Dataset:
    """Per-frame functional groups of frame ``k`` merged over the shared ones."""
    merged = Dataset()
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = seg.get(seq)
        if items:
            item = items[0] if seq.startswith("Shared") else items[k]
            for elem in item:
                merged.add(elem)
    return merged


def _source_ref(item: Dataset) -> tuple[str, int | None] | None:
    for derivation in item.get("DerivationImageSequence", []):
        for source in derivation.get("SourceImageSequence", []):
            uid = str(source.get("ReferencedSOPInstanceUID", ""))
            frames = source.get("ReferencedFrameNumber")
            frame = None if frames is None else int(frames[0] if isinstance(
                frames, Sequence) and not isinstance(frames, str) else frames)
            if uid:
                return uid, frame
    return None


def _slice_by_position(item: Dataset, dwi: SeriesVolume) -> int | None:
    """The DWI slice whose plane holds the frame's Image Position (Patient), if any."""
    planes = item.get("PlanePositionSequence")
    if not planes or "ImagePositionPatient" not in planes[0]:
        return None
    pos = np.asarray([float(v) for v in planes[0].ImagePositionPatient])
    ijk = np.linalg.solve(dwi.affine[:3, :3], pos - dwi.affine[:3, 3])
    k = int(round(float(ijk[0])))
    # the frame's first pixel is the slice's first voxel (to a twentieth of a voxel)
    if 0 <= k < dwi.shape[0] and bool((np.abs(ijk - (k, 0, 0)) < 0.05).all()):
        return k
    return None


def seg_on_grid(seg: Dataset, dwi: SeriesVolume, name: str = "seg") -> np.ndarray:
    """The SEG's (single) segment as a uint8 (z, y, x) mask on the DWI's grid.

    Raises:
        DicomSegCaseError: the SEG's frames differ from the DWI in size, or a frame matches no
            DWI slice by referenced instance or by position.
    """
    nz, ny, nx = dwi.shape
    if (int(seg.Rows), int(seg.Columns)) != (ny, nx):
        raise DicomSegCaseError(f"case {name}: SEG frames are {seg.Rows}x{seg.Columns}, the DWI "
                                f"{ny}x{nx}")
    pixels = np.asarray(seg.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if str(seg.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        top = float(seg.get("MaximumFractionalValue", pixels.max() or 1))
        pixels = pixels >= top / 2
    index = {(r.sop_instance_uid, r.frame_number): k for k, r in enumerate(dwi.slice_refs)}
    single = {r.sop_instance_uid: k for k, r in enumerate(dwi.slice_refs)
              if r.frame_number is None}
    out = np.zeros(dwi.shape, dtype=np.uint8)
    for f in range(pixels.shape[0]):
        item = _frame_items(seg, f)
        ref = _source_ref(item)
        k = None
        if ref is not None:
            k = index.get(ref) if ref[1] is not None else single.get(ref[0])
        if k is None:
            k = _slice_by_position(item, dwi)
        if k is None:
            raise DicomSegCaseError(f"case {name}: SEG frame {f + 1} matches no DWI slice (by "
                                    "referenced instance or position)")
        out[k] |= (pixels[f] > 0).astype(np.uint8)
    return out


# --- fracture: radiographs + a reference TID 1500 SR ----------------------------------------------

SR_STORAGE = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34",
    "1.2.840.10008.5.1.4.1.1.88.35"})
"""Basic Text, Enhanced, Comprehensive, Comprehensive 3D and Extensible SR (PS3.4 B.5)."""
MEASUREMENT_REPORT = ("126000", "DCM")
"""Root concept of TID 1500, Imaging Measurement Report."""
MEASUREMENT_GROUP = ("125007", "DCM")
_AREA_TYPES = ("POLYLINE", "POLYGON")


class DicomSrCaseError(InputError):
    """A fracture case folder that cannot be evaluated; the message names the case."""


@dataclass(frozen=True)
class SrImage:
    """One image of a DICOM + SR case, checked but not yet read: its file, its truth boxes
    ((x0, y0, x1, y1) in its stored pixels, empty for a negative) and its body part."""

    case: str
    path: Path
    sop_instance_uid: str
    body_part: str
    truth: tuple[Box, ...]


def dicom_sr_cases(folder: Path, body_part: str | None = None,
                   body_parts: Collection[str] | None = None) -> list[SrImage]:
    """Every selected image of every case sub-folder of ``folder`` (name order), with its
    truth boxes from the case's SR. ``body_part`` stands in for images whose header names
    none; ``body_parts``, when given, are the only ones allowed (the model's card).

    Raises:
        DicomSrCaseError: no case sub-folder, or a case that :func:`dicom_sr_case` refuses.
    """
    return [im for d in _case_dirs(folder, DicomSrCaseError)
            for im in dicom_sr_case(d, body_part, body_parts)]


def dicom_sr_case(case_dir: Path, body_part: str | None = None,
                  body_parts: Collection[str] | None = None) -> list[SrImage]:
    """The images the fracture selector reads in ``case_dir``, each with its SR boxes.

    Raises:
        DicomSrCaseError: no images, not exactly one SR, an SR that is not a TID 1500
            report or whose region is not one (a point, a line, 3-D coordinates, no image),
            a region on an image that is not in the case or that the selector leaves out,
            no selected image, or an image whose body part is unknown or not allowed.
    """
    name = case_dir.name
    sr, images = _split_sr(case_dir, name)
    regions = sr_regions(sr, name)
    selection = select_fracture(study_facts([h for _, h in images]))
    if not selection.ok:
        reasons = "; ".join(r for v in selection.verdicts for r in v.reasons) or "none"
        raise DicomSrCaseError(f"case {name}: no usable CR/DX image ({reasons})")
    chosen = {c.series_instance_uid for c in selection.choices}
    by_uid = {str(h.get("SOPInstanceUID", "")): (p, h) for p, h in images}
    for uid in regions:
        if uid not in by_uid:
            raise DicomSrCaseError(f"case {name}: the SR marks an image that is not in the case "
                                   f"({uid})")
        if str(by_uid[uid][1].get("SeriesInstanceUID", "")) not in chosen:
            raise DicomSrCaseError(f"case {name}: the SR marks image {uid}, which the fracture "
                                   "selector leaves out")
    out = []
    for uid, (path, header) in by_uid.items():
        if str(header.get("SeriesInstanceUID", "")) not in chosen:
            continue
        part = find_body_part(header)[0] or body_part
        if part is None:
            raise DicomSrCaseError(f"case {name}: image {uid} names no body part (give one)")
        if body_parts is not None and part.upper() not in {p.upper() for p in body_parts}:
            raise DicomSrCaseError(f"case {name}: image {uid} shows {part}, not a body part "
                                   f"the model reads ({', '.join(body_parts)})")
        rows, columns = int(header.get("Rows", 0)), int(header.get("Columns", 0))
        boxes = tuple(_clip(b, rows, columns, name, uid) for b in regions.get(uid, []))
        out.append(SrImage(name, path, uid, part.upper(), boxes))
    return out


def _split_sr(case_dir: Path, name: str) -> tuple[Dataset, list[tuple[Path, Dataset]]]:
    """The case's one SR (whole) and the headers of its other DICOM files."""
    srs: list[Path] = []
    images: list[tuple[Path, Dataset]] = []
    for path in sorted(p for p in case_dir.rglob("*") if p.is_file()):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue  # not DICOM: notes, checksums and the like
        if str(ds.get("SOPClassUID", "")) in SR_STORAGE:
            srs.append(path)
        elif "SOPClassUID" in ds:
            images.append((path, ds))
    if not images:
        raise DicomSrCaseError(f"case {name}: no DICOM images")
    if len(srs) != 1:
        raise DicomSrCaseError(f"case {name}: {len(srs)} DICOM SR objects, expected one")
    sr = dcmread(srs[0])
    if _code(sr) != MEASUREMENT_REPORT:
        raise DicomSrCaseError(f"case {name}: the SR is not a TID 1500 measurement report "
                               f"(root concept {_code(sr)})")
    return sr, images


def _code(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    return str(names[0].get("CodeValue", "")), str(names[0].get("CodingSchemeDesignator", ""))


def sr_regions(sr: Dataset, name: str = "sr") -> dict[str, list[Box]]:
    """Boxes per referenced SOP Instance UID: one per region of each measurement group.

    Raises:
        DicomSrCaseError: a region that is not an area on one image (see the module).
    """
    out: dict[str, list[Box]] = {}

    def walk(items: Sequence[Dataset]) -> None:
        for item in items:
            if item.get("ValueType") == "CONTAINER" and _code(item) == MEASUREMENT_GROUP:
                for child in item.get("ContentSequence", []):
                    if child.get("ValueType") in ("SCOORD", "SCOORD3D"):
                        uid, box = region_box(child, name)
                        out.setdefault(uid, []).append(box)
            else:
                walk(item.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return out


def region_box(item: Dataset, name: str = "sr") -> tuple[str, Box]:
    """(referenced image UID, bounding box) of one SCOORD region (PS3.3 C.18.6.1: points are
    (column, row) from the top left corner of the top left pixel).

    Raises:
        DicomSrCaseError: SCOORD3D, a POINT / MULTIPOINT / two-point line, or no IMAGE child.
    """
    kind = str(item.get("GraphicType", ""))
    if item.get("ValueType") == "SCOORD3D":
        raise DicomSrCaseError(f"case {name}: a SCOORD3D region; radiograph regions must be "
                               "SCOORD on the image")
    refs = [str(c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for c in item.get("ContentSequence", [])
            if c.get("ValueType") == "IMAGE" and c.get("ReferencedSOPSequence")]
    if len(refs) != 1:
        raise DicomSrCaseError(f"case {name}: a {kind} region references {len(refs)} images, "
                               "expected one")
    pts = np.asarray([float(v) for v in item.get("GraphicData", [])]).reshape(-1, 2)
    if kind in _AREA_TYPES and len(pts) >= 3:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    elif kind == "CIRCLE" and len(pts) == 2:
        r = float(np.hypot(*(pts[1] - pts[0])))
        lo, hi = pts[0] - r, pts[0] + r
    elif kind == "ELLIPSE" and len(pts) == 4:
        # ends of the major then the minor axis: the box of a possibly rotated ellipse
        centre = pts[:2].mean(axis=0)
        u, v = (pts[1] - pts[0]) / 2, (pts[3] - pts[2]) / 2
        half = np.sqrt(u ** 2 + v ** 2)
        lo, hi = centre - half, centre + half
    else:
        raise DicomSrCaseError(f"case {name}: a {kind or 'untyped'} region of {len(pts)} "
                               "point(s) is not an area")
    return refs[0], (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def _clip(box: Box, rows: int, columns: int, name: str, uid: str) -> Box:
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(columns), box[2]), min(float(rows), box[3])
    if x1 <= x0 or y1 <= y0:
        raise DicomSrCaseError(f"case {name}: a region on image {uid} has no area on the "
                               f"{rows} x {columns} image")
    return (x0, y0, x1, y1)


def read_sr_image(image: SrImage) -> DetectionCase:
    """The image read as the node reads it (:func:`dicom_node.radiograph.read_radiograph`),
    with its truth boxes.

    Raises:
        DicomSrCaseError: the pixels cannot be read (the reader's reason, the case named).
    """
    try:
        read = read_radiograph(image.path)
    except RadiographReadError as exc:
        raise DicomSrCaseError(f"case {image.case}: image {image.sop_instance_uid} cannot be "
                               f"read ({exc.reason}): {exc}") from exc
    return DetectionCase(Radiograph(
        array=read.pixels, image_id=read.sop_instance_uid,
        pixel_spacing_mm=read.pixel_spacing_mm, body_part=image.body_part,
        laterality=read.laterality, view=read.view), image.truth)


def dicom_sr_detection_cases(images: Sequence[SrImage]) -> Iterator[DetectionCase]:
    """The images read one at a time (a 3k x 3k radiograph is 36 MB as float32)."""
    for image in images:
        yield read_sr_image(image)
