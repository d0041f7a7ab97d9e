"""Stroke evaluation cases from DICOM: the diffusion series of a study and a reference SEG.

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
maximum. This module lives in ``workers`` because it needs both ``dicom_node`` and ``inference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.selection import study_facts
from dicom_node.volume import SeriesVolume
from inference.errors import InputError
from inference.evaluation.stroke import SegmentationCase
from inference.types import StudyInput
from workers.pipelines.runner import model_volume, read_roles
from workers.pipelines.stroke import STROKE, model_options, select_stroke

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
"""Segmentation Storage SOP Class (PS3.4 B.5)."""


class DicomSegCaseError(InputError):
    """A case folder that cannot be evaluated; the message names the case and the reason."""


def dicom_seg_cases(folder: Path) -> list[SegmentationCase]:
    """One case per sub-folder of ``folder`` (name order), read by :func:`dicom_seg_case`.

    Raises:
        DicomSegCaseError: ``folder`` has no case sub-folder, or a case cannot be read.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DicomSegCaseError(f"{root}: not a folder")
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not dirs:
        raise DicomSegCaseError(f"{root}: no case sub-folders")
    return [dicom_seg_case(d) for d in dirs]


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
