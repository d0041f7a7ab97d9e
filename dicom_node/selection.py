"""Which series of a study a pipeline reads, decided from headers alone, with the reasons.

`series_facts` reduces each series' headers (no pixels) to the few facts selection needs;
`select_ich` is a pure function of those facts (the stroke and fracture selectors live with
their pipeline definitions, `workers.pipelines.stroke` and `workers.pipelines.fracture`). Every
series gets a verdict with its reasons, whether chosen or not, so the job record can say why a
study was read the way it was, or why it was not read at all.

Attributes used: Image Type (PS3.3 C.7.6.1.1.2; C.8.15.3.1 for Enhanced CT), Image Orientation
(Patient) (C.7.6.2.1.1), Contrast/Bolus Agent (C.7.6.4), Convolution Kernel (C.8.2.1),
Slice Thickness (C.7.6.2), Diffusion b-value (C.8.13.5.9) and its usual vendor placements.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)

from dicom_node.volume import diffusion

_CT_IMAGE_CLASSES = {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR (PS3.4 B.5)
_HEAD_PARTS = {"HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD_NECK"}

_LOCALIZER_WORDS = re.compile(r"\b(SCOUT|TOPOGRAM|LOCALI[SZ]ER|SURVIEW|SCANOGRAM|PILOT)\b")
_DOSE_WORDS = re.compile(r"\bDOSE\b")
_CONTRAST_WORDS = re.compile(r"(\bCTA\b|\bANGIO|\bC\+|\bWITH CONTRAST\b|\bPOST[ -]?CONTRAST\b)")
_REFORMAT_TYPES = {"MPR", "REFORMATTED", "MIP", "MINIP", "VOLUME RENDER", "PROJECTION IMAGE"}
# Kernel names by vendor habit: GE words, Siemens H/Hr/Br/Qr/J + sharpness number, Canon FCnn,
# Philips UB/UC for brain. Unknown names rank between soft and sharp rather than being guessed.
_SOFT_KERNEL = re.compile(
    r"(BRAIN|SOFT|STANDARD|STND|\b(H|HR|BR|QR|J)[1-4]\d|\bFC[12]\d|\bUB\b|\bUC\b)"
)
_SHARP_KERNEL = re.compile(r"(BONE|EDGE|DETAIL|SHARP|LUNG|\b(H|HR|BR|QR|J)[6-9]\d|\bFC[3-8]\d)")


@dataclass(frozen=True)
class SeriesFacts:
    """What selection knows about one series. `text` is Series Description + Protocol Name
    (upper case) for keyword rules; `plane` is AXIAL, CORONAL, SAGITTAL, OBLIQUE or UNKNOWN;
    `b_values` maps each diffusion b-value found to its SOP Instance UIDs; `b_frames` maps it to
    (SOP Instance UID, frame number) pairs for Enhanced MR images with per-frame b-values."""

    series_instance_uid: str
    modality: str
    sop_class_uids: tuple[str, ...]
    image_type: tuple[str, ...]
    text: str
    description: str
    body_part: str
    images: int
    slice_thickness: float | None
    plane: str
    contrast: bool
    kernel: str
    presentation_intent: str = ""
    series_number: int = 0
    sop_instance_uids: tuple[str, ...] = ()
    b_values: tuple[tuple[float, tuple[str, ...]], ...] = ()
    b_frames: tuple[tuple[float, tuple[tuple[str, int], ...]], ...] = ()

    def frames_at(self, b: float) -> tuple[tuple[str, int], ...]:
        """The (SOP Instance UID, frame number) pairs of multi-frame images at b-value `b`;
        empty when the series gives no per-frame b-values (read whole instances then)."""
        return next((frames for value, frames in self.b_frames if value == b), ())


@dataclass(frozen=True)
class Verdict:
    """One series' outcome: usable or not, chosen (as `role`) or not, and why."""

    series_instance_uid: str
    usable: bool
    reasons: tuple[str, ...]
    role: str | None = None


@dataclass(frozen=True)
class Choice:
    """A chosen series in a role; `sop_instance_uids` empty means the whole series; `frames`,
    when not empty, names the frames to read as (SOP Instance UID, 1-based frame number) pairs
    (`dicom_node.volume.read_series(paths, frames=...)`), for multi-frame images whose frames
    differ in role (b=0 and b=1000 frames of one Enhanced MR image)."""

    role: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...] = ()
    frames: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Selection:
    """The series a pipeline will read, with a verdict for every series of the study."""

    pipeline: str
    choices: tuple[Choice, ...]
    verdicts: tuple[Verdict, ...]

    @property
    def ok(self) -> bool:
        return bool(self.choices)

    def series_for(self, role: str) -> Choice | None:
        return next((c for c in self.choices if c.role == role), None)

    def record(self) -> dict[str, Any]:
        """JSON-ready explanation for the job record (UIDs and reasons only, no PHI)."""
        return {
            "pipeline": self.pipeline,
            "chosen": [
                {"role": c.role, "series_instance_uid": c.series_instance_uid,
                 "instances": len(c.sop_instance_uids) or None}
                for c in self.choices
            ],
            "series": [
                {"series_instance_uid": v.series_instance_uid, "usable": v.usable,
                 "role": v.role, "reasons": list(v.reasons)}
                for v in self.verdicts
            ],
        }


@dataclass(frozen=True)
class IchCriteria:
    """Limits for the ICH reading series: slice thickness range (mm), fewest images, and the
    largest angle (degrees) between the slice normal and the head-foot axis still called axial."""

    min_thickness_mm: float = 0.5
    max_thickness_mm: float = 5.0
    min_images: int = 10
    max_axial_angle_deg: float = 30.0


# --- facts -------------------------------------------------------------------------------------


def _number(value: Any, kind: type[float] | type[int]) -> float | int | None:
    """A DS / IS value as a number; None when absent, empty or not a number (real headers
    carry "" and words where numbers belong)."""
    if value is None or value == "":
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _upper_values(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip().upper() for v in items if str(v).strip())


def _plane(ds: Dataset, max_angle_deg: float = 30.0) -> str:
    """Anatomical plane nearest to the image plane, from its normal (OBLIQUE when the normal is
    more than `max_angle_deg` from every patient axis)."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None:
        groups = ds.get("SharedFunctionalGroupsSequence")
        if groups and "PlaneOrientationSequence" in groups[0]:
            iop = groups[0].PlaneOrientationSequence[0].get("ImageOrientationPatient")
    values = [_number(v, float) for v in iop] if iop is not None and not isinstance(
        iop, str | bytes) else []
    if len(values) != 6 or any(v is None for v in values):
        return "UNKNOWN"
    vector = np.asarray(values, dtype=float)
    normal = np.cross(vector[:3], vector[3:])
    size = float(np.linalg.norm(normal))
    if size < 1e-6:
        return "UNKNOWN"
    cosines = np.abs(normal / size)
    axis = int(np.argmax(cosines))
    if np.degrees(np.arccos(min(1.0, float(cosines[axis])))) > max_angle_deg:
        return "OBLIQUE"
    return ("SAGITTAL", "CORONAL", "AXIAL")[axis]


_b_value = diffusion.b_value


def _b_values(headers: Sequence[Dataset]) -> tuple[
        tuple[tuple[float, tuple[str, ...]], ...],
        tuple[tuple[float, tuple[tuple[str, int], ...]], ...]]:
    """Instances per b-value, and frames per b-value of the Enhanced MR images that give
    b-values per frame (`diffusion.frame_b_values`; only their trace frames, see
    `diffusion.trace_frames`). Such an instance is listed under each of its b-values."""
    by_b: dict[float, list[str]] = {}
    frames_by_b: dict[float, list[tuple[str, int]]] = {}
    for ds in headers:
        uid = str(ds.get("SOPInstanceUID", ""))
        per_frame = diffusion.trace_frames(diffusion.frame_b_values(ds))
        for b, numbers in per_frame.items():
            by_b.setdefault(b, []).append(uid)
            frames_by_b.setdefault(b, []).extend((uid, n) for n in numbers)
        single = None if per_frame else _b_value(ds)
        if single is not None:
            by_b.setdefault(single, []).append(uid)
    return (tuple((b, tuple(uids)) for b, uids in sorted(by_b.items())),
            tuple((b, tuple(frames)) for b, frames in sorted(frames_by_b.items())))


def series_facts(headers: Sequence[Dataset]) -> SeriesFacts:
    """Facts of one series from its instances' headers (pixels are never read)."""
    first = headers[0]
    image_type: list[str] = []
    for ds in headers:
        image_type.extend(v for v in _upper_values(ds.get("ImageType")) if v not in image_type)
    b_values, b_frames = _b_values(headers)
    thickness = _number(first.get("SliceThickness"), float)
    text = " ".join(
        str(first.get(k, "")) for k in ("SeriesDescription", "ProtocolName")
    ).upper()
    return SeriesFacts(
        series_instance_uid=str(first.get("SeriesInstanceUID", "")),
        modality=str(first.get("Modality", "")).upper(),
        sop_class_uids=tuple(sorted({str(ds.get("SOPClassUID", "")) for ds in headers})),
        image_type=tuple(image_type),
        text=text,
        description=str(first.get("SeriesDescription", "")).upper(),
        body_part=str(first.get("BodyPartExamined", "")).upper(),
        images=sum(int(_number(ds.get("NumberOfFrames"), int) or 1) for ds in headers),
        slice_thickness=float(thickness) if thickness is not None else None,
        plane=_plane(first),
        contrast=any(
            str(ds.get("ContrastBolusAgent", "")).strip() or ds.get("ContrastBolusAgentSequence")
            for ds in headers
        ),
        kernel=" ".join(_upper_values(first.get("ConvolutionKernel"))),
        presentation_intent=str(first.get("PresentationIntentType", "")).upper(),
        series_number=int(_number(first.get("SeriesNumber"), int) or 0),
        sop_instance_uids=tuple(str(ds.get("SOPInstanceUID", "") or "") for ds in headers),
        b_values=b_values,
        b_frames=b_frames,
    )


def study_facts(headers: Iterable[Dataset]) -> list[SeriesFacts]:
    """Groups a study's instance headers by Series Instance UID and summarises each series."""
    series: dict[str, list[Dataset]] = {}
    for ds in headers:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return [series_facts(group) for group in series.values()]


# --- shared rules ------------------------------------------------------------------------------


def non_image_reasons(f: SeriesFacts) -> list[str]:
    """Reasons a series is not a primary acquisition (dose reports, localizers, reformats) or
    cannot be referenced (an instance without SOP Instance UID, Type 1 in PS3.3 C.12.1)."""
    reasons = []
    unnamed = sum(1 for uid in f.sop_instance_uids if not uid)
    if unnamed:
        reasons.append(f"not usable: {unnamed} instance(s) without SOP Instance UID")
    if _DOSE_SR in f.sop_class_uids or f.modality == "SR":
        reasons.append("structured report (dose report or other SR), not images")
    elif _DOSE_WORDS.search(f.text) and (f.modality == "OT" or "SECONDARY" in f.image_type):
        reasons.append("dose report screen (secondary capture)")
    if "LOCALIZER" in f.image_type or _LOCALIZER_WORDS.search(f.text):
        reasons.append("localizer / scout")
    if "DERIVED" in f.image_type[:1] or "SECONDARY" in f.image_type[1:2]:
        reasons.append(f"derived or secondary image type ({'/'.join(f.image_type[:3])})")
    reformats = sorted(_REFORMAT_TYPES.intersection(f.image_type))
    if reformats:
        reasons.append(f"reformat / projection ({', '.join(reformats)})")
    return reasons


def _kernel_class(f: SeriesFacts) -> str:
    for source in (f.kernel, f.description):
        if _SOFT_KERNEL.search(source) and not _SHARP_KERNEL.search(source):
            return "soft"
        if _SHARP_KERNEL.search(source) and not _SOFT_KERNEL.search(source):
            return "sharp"
    return "unknown"


# --- ICH ---------------------------------------------------------------------------------------


def _ich_reasons(f: SeriesFacts, c: IchCriteria) -> list[str]:
    reasons = []
    if f.modality != "CT":
        reasons.append(f"modality {f.modality or 'absent'}, not CT")
    elif not _CT_IMAGE_CLASSES.intersection(f.sop_class_uids):
        reasons.append("not a CT image object (e.g. secondary capture)")
    reasons += non_image_reasons(f)
    if f.images < c.min_images:
        reasons.append(f"only {f.images} image(s); at least {c.min_images} needed")
    if f.plane != "AXIAL":
        reasons.append(f"{f.plane.lower()} orientation, not axial")
    if f.contrast or _CONTRAST_WORDS.search(f.text):
        reasons.append("contrast-enhanced (Contrast/Bolus Agent or description)")
    if f.body_part and f.body_part not in _HEAD_PARTS:
        reasons.append(f"body part {f.body_part}, not head")
    t = f.slice_thickness
    if t is not None and not c.min_thickness_mm <= t <= c.max_thickness_mm:
        reasons.append(
            f"slice thickness {t:g} mm outside {c.min_thickness_mm:g}-{c.max_thickness_mm:g} mm"
        )
    return reasons


def select_ich(facts: Sequence[SeriesFacts], criteria: IchCriteria | None = None) -> Selection:
    """The axial non-contrast head CT to read for haemorrhage.

    Usable series are ranked: soft-tissue/brain kernel before unknown before bone/sharp, then
    the thinnest slices (unknown thickness last), then the most images, then series number.
    """
    c = criteria or IchCriteria()
    verdicts: dict[str, Verdict] = {}
    usable = []
    for f in facts:
        reasons = _ich_reasons(f, c)
        if reasons:
            verdicts[f.series_instance_uid] = Verdict(f.series_instance_uid, False, tuple(reasons))
        else:
            usable.append(f)
    rank = {"soft": 0, "unknown": 1, "sharp": 2}

    def key(f: SeriesFacts) -> tuple[int, float, int, int]:
        thickness = f.slice_thickness if f.slice_thickness is not None else float("inf")
        return rank[_kernel_class(f)], thickness, -f.images, f.series_number

    usable.sort(key=key)
    for position, f in enumerate(usable):
        kernel = _kernel_class(f)
        thickness = f"{f.slice_thickness:g} mm" if f.slice_thickness else "unknown thickness"
        facts_text = f"axial non-contrast CT, {f.images} images, {thickness}, {kernel} kernel"
        if position == 0:
            others = f"; preferred over {len(usable) - 1} other usable" if len(usable) > 1 else ""
            verdicts[f.series_instance_uid] = Verdict(
                f.series_instance_uid, True, (f"chosen: {facts_text}{others}",), "ct"
            )
        else:
            verdicts[f.series_instance_uid] = Verdict(
                f.series_instance_uid, True,
                (f"usable but ranked {position + 1}: {facts_text}",),
            )
    choices = (Choice("ct", usable[0].series_instance_uid),) if usable else ()
    return Selection("ich", choices, tuple(verdicts[f.series_instance_uid] for f in facts))


# --- stroke MR ---------------------------------------------------------------------------------


