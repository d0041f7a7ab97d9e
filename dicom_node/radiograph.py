"""Reads one projection radiograph (CR, DX) for a detection model.

`read_radiograph(path)` returns the image on its stored pixel grid (never resampled, so a box in
its pixel coordinates is a box on the stored image) as float32 values that rise with attenuation
(bone bright) whatever the photometric interpretation, with the header facts a fracture pipeline
needs: spacing in mm at the patient, body part, laterality, view. Every choice made on the way is
listed in `notes`, so a report can say what was applied and what was ignored.

Rules, each with the part of PS3.3 it rests on:

- **Greyscale only** (C.7.6.3.1.2): Samples per Pixel 1 and MONOCHROME1 or MONOCHROME2. RGB,
  YBR and PALETTE COLOR are refused (`unsupported_photometric`); a file without Pixel Data or
  with bytes no installed decoder reads is refused (`unreadable_pixels`). Compressed data
  (JPEG baseline/extended and lossless, JPEG-LS, JPEG 2000, RLE, deflate; PS3.5 A.4, A.5) is
  decoded by pydicom and the pylibjpeg plugins.
- **Multi-frame** (C.7.6.6): CR and DX images have one frame; a file with more is read at frame
  1 only, with a note, so references to the result name frame 1.
- **Modality LUT** (C.11.1): the Modality LUT Sequence when present and usable, else Rescale
  Slope / Intercept (a slope of zero or a value that is not a number is ignored with a note).
- **VOI LUT** (C.11.2): windows are never applied (the model normalises intensities itself), nor
  a linear VOI LUT. One exception: an image meant for display (DX "FOR PRESENTATION", or CR,
  which has no processing variant) whose first VOI LUT Sequence item is non-linear gets that LUT
  applied, because such a curve is the vendor's tone scale, not a window the model could redo.
- **Presentation** (C.7.6.3.1.2, C.8.11.3 DX Image, C.11.6): MONOCHROME1 shows its lowest value
  white, so it is inverted. A Presentation LUT Shape INVERSE on a MONOCHROME2 image means it is
  shown inverted, so it is inverted too; INVERSE on MONOCHROME1 is how the DX Image module
  requires MONOCHROME1 to be labelled and means one inversion, not two. Inversion maps v to
  ``low + high - v`` where low..high is the output range of every stored value that Bits Stored
  and Pixel Representation allow (C.7.6.3.1.1), so it does not depend on the image's content.
- **Pixel padding** (C.7.5.1.1.2): Pixel Padding Value (and Range Limit) pixels are left out of
  that range and set to its low end (no attenuation).
- **Spacing** (10.7.1 Basic Pixel Spacing Calibration, C.8.1.2 CR Image, C.8.11.4 DX Detector,
  C.8.11.5 DX Positioning): Pixel Spacing when present (at the patient); else Imager Pixel
  Spacing divided by the Estimated Radiographic Magnification Factor; else Imager Pixel Spacing
  itself (at the detector, a few percent too large). A value that is not two positive numbers
  is ignored with a note. Pixel Aspect Ratio gives no millimetres and is only noted.
- **Body part** (C.7.3.1 General Series, PS3.16 Annex L; C.8.11.2 DX Anatomy Imaged): Body Part
  Examined, else the Anatomic Region Sequence code (SNOMED CT codes of CID 4031, else its code
  meaning), else whole words of the Series Description, Protocol Name, Study Description and
  Requested Procedure Description, in that order. Variants become one Annex L defined term
  (``TIBIA`` -> ``LEG``, ``THORAX`` -> ``CHEST``...). ``EXTREMITY`` and other vague terms are
  kept only when no later source names something more precise. Unknown: None.
- **Laterality** (C.8.11.2 Image Laterality, C.7.3.1 Laterality): Image Laterality, else the
  series Laterality, else the words LEFT/RIGHT/LT/RT in the same descriptions (both sides named
  means unknown). ``B`` (both) and ``U`` (unpaired) give None.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi
from pydicom.sr.codedict import codes

from dicom_node.volume.errors import RadiographReadError, UnsupportedPixelDataError
from dicom_node.volume.pixels import decode_frame

Side = Literal["left", "right"]
SpacingSource = Literal[
    "pixel spacing", "imager pixel spacing / magnification", "imager pixel spacing (at detector)"
]

_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
_TABLE_LIMIT_BITS = 16  # stored ranges up to 2**16 values are mapped through one lookup table
_LOOKUP_BLOCK = 1 << 20  # pixels looked up at a time (an 8 MiB index copy)
_NONLINEAR_TOLERANCE = 0.01  # a VOI LUT further than 1 % of its range from a line is a curve
_DESCRIPTIONS = ("SeriesDescription", "ProtocolName", "StudyDescription",
                 "RequestedProcedureDescription")


@dataclass(frozen=True)
class RadiographImage:
    """One radiograph as a detection model reads it, with the header facts that go with it.

    ``pixels`` is float32 (rows, columns) on the stored grid, higher = more attenuating.
    ``pixel_spacing_mm`` is (row, column) spacing in mm, ``spacing_source`` which attribute gave
    it. ``body_part`` is an upper-case PS3.16 Annex L defined term, ``body_part_source`` and
    ``laterality_source`` name the attribute each came from. ``frames`` is the file's frame
    count (frame 1 was read). ``notes`` lists what was applied or ignored.
    """

    pixels: np.ndarray
    sop_instance_uid: str
    series_instance_uid: str
    rows: int
    columns: int
    modality: str | None
    photometric: str
    presentation_intent: str | None
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: SpacingSource | None
    body_part: str | None
    body_part_source: str | None
    laterality: Side | None
    laterality_source: str | None
    view: str | None
    frames: int
    notes: tuple[str, ...]


def read_radiograph(path: str | Path) -> RadiographImage:
    """Reads the CR/DX instance at `path` by the rules in this module's docstring.

    Raises:
        RadiographReadError: reason ``unreadable_file``, ``unsupported_photometric`` or
            ``unreadable_pixels``.
    """
    ds = _read_header(path)
    uid = str(ds.get("SOPInstanceUID", "") or "")
    photometric = _check_greyscale(ds, uid)
    notes: list[str] = []
    frames = _frame_count(ds, notes)
    try:
        stored = decode_frame(path, ds, 0)
    except UnsupportedPixelDataError as exc:
        raise RadiographReadError(exc.message, "unreadable_pixels") from exc
    pixels = to_attenuation(stored, ds, notes)
    spacing, spacing_source = pixel_spacing(ds, notes)
    body_part, body_part_source = find_body_part(ds)
    side, side_source = find_laterality(ds, notes)
    return RadiographImage(
        pixels=pixels, sop_instance_uid=uid,
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        rows=int(pixels.shape[0]), columns=int(pixels.shape[1]),
        modality=_text(ds, "Modality"), photometric=photometric,
        presentation_intent=_text(ds, "PresentationIntentType"),
        pixel_spacing_mm=spacing, spacing_source=spacing_source,
        body_part=body_part, body_part_source=body_part_source,
        laterality=side, laterality_source=side_source,
        view=_text(ds, "ViewPosition"), frames=frames, notes=tuple(notes),
    )


def _read_header(path: str | Path) -> Dataset:
    try:
        # Pixel Data stays on disk (deferred): decode_frame reads the one frame it needs.
        return dcmread(path, defer_size="64 KB")
    except (InvalidDicomError, ValueError, OSError, EOFError) as exc:
        raise RadiographReadError(f"not a readable DICOM file ({type(exc).__name__})",
                                  "unreadable_file") from exc


def _check_greyscale(ds: Dataset, uid: str) -> str:
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = _number(ds.get("SamplesPerPixel", 1))
    if samples != 1 or photometric not in _GREYSCALE:
        raise RadiographReadError(
            f"instance {uid or '?'}: photometric {photometric or 'absent'}, "
            f"{samples if samples is not None else '?'} sample(s); only MONOCHROME1/2 is read",
            "unsupported_photometric")
    return photometric


def _frame_count(ds: Dataset, notes: list[str]) -> int:
    frames = _number(ds.get("NumberOfFrames", 1)) or 1
    count = max(1, int(frames))
    if count > 1:
        notes.append(f"multi-frame: frame 1 of {count} read")
    return count


# --- intensities --------------------------------------------------------------------------------

def to_attenuation(stored: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    """Stored values -> float32 values that rise with attenuation, by the module's rules.

    For stored ranges of up to 2**16 values the whole chain (Modality LUT, VOI LUT when one
    applies, inversion, padding) is computed once per possible stored value and applied by one
    table lookup straight into the float32 output: no other image-sized copy is made.
    """
    low, high = _stored_range(ds, stored)
    if high - low < 2 ** _TABLE_LIMIT_BITS:
        domain = np.arange(low, high + 1, dtype=np.int64)
        table = _value_chain(domain, ds, notes).astype(np.float32)
        return _lookup(table, stored, low)
    # Wider than 16 bits (rare in radiography): the same chain on the image itself.
    values = _value_chain(stored.astype(np.int64), ds, notes, domain_range=(low, high))
    return values.astype(np.float32)


def _lookup(table: np.ndarray, stored: np.ndarray, low: int) -> np.ndarray:
    """`table[stored - low]` written into a new float32 array, a block of rows at a time: numpy
    turns the indices into a 64-bit copy first, which for a whole 4k x 4k image would be twice
    the output. Values beyond Bits Stored (stray high bits) are clipped to the table's ends."""
    out = np.empty(stored.shape, dtype=np.float32)
    step = max(1, _LOOKUP_BLOCK // max(1, stored.shape[1]))
    for start in range(0, stored.shape[0], step):
        rows = stored[start:start + step]
        index = rows if low == 0 else rows.astype(np.int64) - low
        np.take(table, index, out=out[start:start + step], mode="clip")
    return out


def _stored_range(ds: Dataset, stored: np.ndarray) -> tuple[int, int]:
    """The stored values Bits Stored and Pixel Representation allow (PS3.3 C.7.6.3.1.1)."""
    bits = _number(ds.get("BitsStored")) or float(stored.dtype.itemsize * 8)
    bits = int(min(max(bits, 1), stored.dtype.itemsize * 8))
    if _number(ds.get("PixelRepresentation", 0)) == 1 or stored.dtype.kind == "i":
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def _value_chain(values: np.ndarray, ds: Dataset, notes: list[str],
                 domain_range: tuple[int, int] | None = None) -> np.ndarray:
    """Modality LUT, VOI LUT (when one applies), padding and inversion on integer `values`.

    `values` is either every possible stored value in order (`domain_range` None) or the image
    itself (`domain_range` = the possible stored values' bounds).
    """
    padding = _padding_mask(values, ds, notes)
    out = _modality(values, ds, notes)
    out = _voi(out, ds, notes)
    if domain_range is None:
        valid = out[~padding] if padding is not None else out
    else:
        ends = np.asarray(domain_range, dtype=np.int64)
        valid = _voi(_modality(ends, ds, []), ds, [])
    low, high = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
    if _inverted(ds, notes):
        out = (low + high) - out
    if padding is not None:
        out = np.where(padding, low, out)
    return out


def _modality(values: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    """Modality LUT Sequence or Rescale Slope / Intercept (PS3.3 C.11.1) as float64."""
    if ds.get("ModalityLUTSequence"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = apply_modality_lut(values, ds)
            notes.append("modality LUT sequence applied")
            return np.asarray(result, dtype=np.float64)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):
            notes.append("modality LUT sequence malformed: ignored")
    slope, intercept = _number(ds.get("RescaleSlope", 1)), _number(ds.get("RescaleIntercept", 0))
    if "RescaleSlope" in ds and (slope is None or slope == 0):
        notes.append("rescale slope unusable: ignored")
        slope = 1.0
    if "RescaleIntercept" in ds and intercept is None:
        notes.append("rescale intercept unusable: ignored")
    slope, intercept = slope if slope is not None else 1.0, intercept or 0.0
    if (slope, intercept) != (1.0, 0.0):
        notes.append(f"rescale applied (slope {slope:g}, intercept {intercept:g})")
    return values * slope + intercept


def _voi(values: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray:
    """The first VOI LUT when the image is meant for display and the LUT is a curve."""
    sequence = ds.get("VOILUTSequence")
    if sequence:
        lut = _lut_data(sequence[0])
        if lut is not None and _for_display(ds) and _nonlinear(lut):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
                notes.append(f"non-linear VOI LUT 1 of {len(sequence)} applied (for display)")
                return np.asarray(result, dtype=np.float64)
            except (ValueError, TypeError, AttributeError, IndexError, KeyError):
                notes.append("VOI LUT sequence malformed: ignored")
                return values
        notes.append("VOI LUT sequence not applied")
    if "WindowCenter" in ds or "WindowWidth" in ds:
        notes.append("VOI window not applied")
    return values


def _lut_data(item: Dataset) -> np.ndarray | None:
    data = item.get("LUTData")
    if data is None:
        return None
    if isinstance(data, bytes):
        data = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2")
    array = np.asarray(data, dtype=np.float64).ravel()
    return array if array.size >= 2 else None


def _nonlinear(lut: np.ndarray) -> bool:
    line = np.linspace(lut[0], lut[-1], lut.size)
    span = float(lut.max() - lut.min()) or 1.0
    return float(np.abs(lut - line).max()) > _NONLINEAR_TOLERANCE * span


def _for_display(ds: Dataset) -> bool:
    intent = _text(ds, "PresentationIntentType")
    if intent is not None:
        return intent.upper() == "FOR PRESENTATION"
    return (_text(ds, "Modality") or "").upper() == "CR"


def _inverted(ds: Dataset, notes: list[str]) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = (_text(ds, "PresentationLUTShape") or "").upper()
    if photometric == "MONOCHROME1":
        notes.append("MONOCHROME1 inverted")
        return True
    if shape == "INVERSE":
        notes.append("presentation LUT shape INVERSE on MONOCHROME2: inverted")
        return True
    return False


def _padding_mask(values: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray | None:
    value = _number(ds.get("PixelPaddingValue"))
    if value is None:
        return None
    limit = _number(ds.get("PixelPaddingRangeLimit"))
    low, high = (value, value) if limit is None else (min(value, limit), max(value, limit))
    mask = (values >= low) & (values <= high)
    if "pixel padding set to minimum" not in notes:
        notes.append("pixel padding set to minimum")
    return np.asarray(mask)


# --- spacing ------------------------------------------------------------------------------------

def pixel_spacing(ds: Dataset, notes: list[str]) -> tuple[tuple[float, float] | None,
                                                          SpacingSource | None]:
    """(row, column) spacing in mm and the attribute it came from, by the module's rules."""
    spacing = _pair(ds, "PixelSpacing", notes)
    if spacing is not None:
        calibration = _text(ds, "PixelSpacingCalibrationType")
        if calibration:
            notes.append(f"pixel spacing calibration {calibration.upper()}")
        elif spacing == _pair(ds, "ImagerPixelSpacing", []):
            notes.append("pixel spacing equals imager pixel spacing (may not be calibrated)")
        return spacing, "pixel spacing"
    imager = _pair(ds, "ImagerPixelSpacing", notes)
    if imager is not None:
        factor = _magnification(ds, notes)
        if factor is not None:
            return (imager[0] / factor, imager[1] / factor), "imager pixel spacing / magnification"
        notes.append("spacing at the detector (no magnification factor)")
        return imager, "imager pixel spacing (at detector)"
    ratio = ds.get("PixelAspectRatio")
    notes.append("no pixel spacing" + (f" (pixel aspect ratio {_join(ratio)})" if ratio else ""))
    return None, None


def _pair(ds: Dataset, keyword: str, notes: list[str]) -> tuple[float, float] | None:
    if keyword not in ds:
        return None
    raw = ds[keyword].value
    items = list(raw) if isinstance(raw, Iterable) and not isinstance(raw, str | bytes) else [raw]
    numbers = [_number(v) for v in items]
    if len(numbers) == 2 and all(n is not None and n > 0 for n in numbers):
        return float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]
    notes.append(f"{_spaced(keyword)} malformed: ignored")
    return None


def _magnification(ds: Dataset, notes: list[str]) -> float | None:
    if "EstimatedRadiographicMagnificationFactor" not in ds:
        return None
    factor = _number(ds.get("EstimatedRadiographicMagnificationFactor"))
    if factor is None or factor < 1.0:
        # Magnification in a projection is source-to-image over source-to-object: never < 1.
        notes.append("estimated radiographic magnification factor unusable: ignored")
        return None
    return factor


# --- anatomy ------------------------------------------------------------------------------------

def find_body_part(ds: Dataset) -> tuple[str | None, str | None]:
    """(Annex L defined term, source attribute) by the module's rules, or (None, None)."""
    vague: tuple[str, str] | None = None
    for source, term in _body_part_candidates(ds):
        if term is None:
            continue
        if term not in _VAGUE:
            return term, source
        vague = vague or (term, source)
    return vague if vague is not None else (None, None)


def _body_part_candidates(ds: Dataset) -> Iterable[tuple[str, str | None]]:
    yield "body part examined", body_part_from_text(_text(ds, "BodyPartExamined"), whole=True)
    for item in ds.get("AnatomicRegionSequence") or []:
        code = body_part_from_code(_text(item, "CodeValue"), _text(item, "CodingSchemeDesignator"))
        yield "anatomic region sequence", code or body_part_from_text(
            _text(item, "CodeMeaning"), whole=True)
    for keyword, text in _descriptions(ds):
        yield _spaced(keyword), body_part_from_text(text, whole=False)


def find_laterality(ds: Dataset, notes: list[str]) -> tuple[Side | None, str | None]:
    """(side, source attribute) by the module's rules, or (None, None)."""
    for keyword in ("ImageLaterality", "Laterality"):
        code = (_text(ds, keyword) or "").upper()
        if code in ("L", "R"):
            return ("left" if code == "L" else "right"), _spaced(keyword)
        if code in ("B", "U"):
            notes.append(f"{_spaced(keyword)} {code}: no side")
            return None, _spaced(keyword)
    for keyword, text in _descriptions(ds):
        words = set(_words(text))
        left, right = bool(words & {"LEFT", "LT"}), bool(words & {"RIGHT", "RT"})
        if left != right:
            return ("left" if left else "right"), _spaced(keyword)
        if left and right:
            notes.append(f"{_spaced(keyword)} names both sides: no side")
            return None, None
    return None, None


def _descriptions(ds: Dataset) -> Iterable[tuple[str, str]]:
    for keyword in _DESCRIPTIONS:
        text = _text(ds, keyword)
        if text:
            yield keyword, text
    for item in ds.get("RequestAttributesSequence") or []:
        text = _text(item, "RequestedProcedureDescription")
        if text:
            yield "RequestedProcedureDescription", text


def _words(text: str) -> list[str]:
    return re.sub(r"[^A-Z0-9]+", " ", text.upper()).split()


# --- body part vocabulary -----------------------------------------------------------------------

# Annex L defined term -> the spellings met in headers and descriptions (after upper-casing and
# turning punctuation into spaces). A term's own spelling is always accepted.
_ALIASES: dict[str, tuple[str, ...]] = {
    "HAND": ("HANDS", "METACARPAL", "METACARPALS"),
    "FINGER": ("FINGERS",),
    "THUMB": (),
    "WRIST": ("WRISTS", "SCAPHOID", "CARPUS"),
    "FOREARM": ("FORE ARM", "RADIUS", "ULNA", "RADIUS ULNA", "RADIUSULNA"),
    "ELBOW": ("ELBOWS",),
    "HUMERUS": ("ARM", "UPPER ARM", "UPPERARM"),
    "SHOULDER": ("SHOULDERS",),
    "CLAVICLE": (),
    "SCAPULA": (),
    "FOOT": ("FEET",),
    "TOE": ("TOES",),
    "CALCANEUS": ("HEEL", "OS CALCIS"),
    "ANKLE": ("ANKLES",),
    "LEG": ("LOWER LEG", "LOWERLEG", "TIBIA", "FIBULA", "TIB FIB", "TIBFIB", "TIBIA FIBULA",
            "TIBIAFIBULA"),
    "KNEE": ("KNEES",),
    "PATELLA": (),
    "FEMUR": ("THIGH",),
    "HIP": ("HIPS",),
    "PELVIS": (),
    "CHEST": ("THORAX",),
    "RIB": ("RIBS",),
    "SKULL": ("CRANIUM",),
    "SPINE": ("WHOLE SPINE",),
    "CSPINE": ("C SPINE", "CERVICAL SPINE"),
    "TSPINE": ("T SPINE", "THORACIC SPINE", "DORSAL SPINE"),
    "LSPINE": ("L SPINE", "LUMBAR SPINE"),
    "ABDOMEN": (),
    "HEAD": (),
    "NECK": (),
    "EXTREMITY": ("UPPER EXTREMITY", "LOWER EXTREMITY", "UPPER LIMB", "LOWER LIMB"),
}
# In free text these name parts of other regions ("neck of femur", "radial head").
_NOT_IN_DESCRIPTIONS = frozenset({"HEAD", "NECK"})
_VAGUE = frozenset({"EXTREMITY"})

# CID 4031 Common Anatomic Regions (SNOMED CT, from pydicom's tables) -> Annex L term, plus
# region codes older objects carry (wrist region, thoracic structure, ankle region).
_REGION_CODES: dict[str, str] = {
    **{getattr(codes.cid4031, keyword).value: term for keyword, term in (
        ("Hand", "HAND"), ("Finger", "FINGER"), ("Thumb", "THUMB"), ("WristJoint", "WRIST"),
        ("Forearm", "FOREARM"), ("ElbowJoint", "ELBOW"), ("Humerus", "HUMERUS"),
        ("UpperArm", "HUMERUS"), ("Shoulder", "SHOULDER"), ("Clavicle", "CLAVICLE"),
        ("Scapula", "SCAPULA"), ("Foot", "FOOT"), ("Toe", "TOE"), ("Calcaneus", "CALCANEUS"),
        ("AnkleJoint", "ANKLE"), ("LowerLeg", "LEG"), ("Fibula", "LEG"), ("Knee", "KNEE"),
        ("Patella", "PATELLA"), ("Femur", "FEMUR"), ("Thigh", "FEMUR"), ("Hip", "HIP"),
        ("HipJoint", "HIP"), ("Pelvis", "PELVIS"), ("Chest", "CHEST"), ("Rib", "RIB"),
        ("Skull", "SKULL"), ("Spine", "SPINE"), ("CervicalSpine", "CSPINE"),
        ("ThoracicSpine", "TSPINE"), ("LumbarSpine", "LSPINE"), ("Abdomen", "ABDOMEN"),
        ("Head", "HEAD"), ("Neck", "NECK"), ("Extremity", "EXTREMITY"),
        ("UpperLimb", "EXTREMITY"), ("LowerLimb", "EXTREMITY"))},
    "8205005": "WRIST", "51185008": "CHEST", "344001": "ANKLE", "12611008": "LEG",
}
_SPELLINGS: dict[str, str] = {
    alias: term for term, aliases in _ALIASES.items() for alias in (term, *aliases)
}
_IN_TEXT = re.compile(r"\b(?:" + "|".join(
    re.escape(alias) for alias in sorted(
        (a for a, t in _SPELLINGS.items() if t not in _NOT_IN_DESCRIPTIONS),
        key=len, reverse=True)
) + r")\b")


def body_part_from_text(text: str | None, *, whole: bool) -> str | None:
    """The Annex L term `text` names, or None.

    `whole`: the text is a coded value (Body Part Examined, a code meaning) and is first
    matched entire, with and without its spaces; otherwise, and failing that, the first
    spelling found as whole words (the longest at one place) decides.
    """
    if not text:
        return None
    words = " ".join(_words(text))
    if whole:
        term = _SPELLINGS.get(words) or _SPELLINGS.get(words.replace(" ", ""))
        if term is not None:
            return term
    found = _IN_TEXT.search(words)
    return _SPELLINGS[found.group(0)] if found else None


def body_part_from_code(value: str | None, scheme: str | None) -> str | None:
    """The Annex L term for a SNOMED CT anatomic region code, or None."""
    if not value or (scheme or "").upper() != "SCT":
        return None
    return _REGION_CODES.get(value)


# --- small readers --------------------------------------------------------------------------------

def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except (ValueError, TypeError):
        return None
    if value is None or isinstance(value, bytes | Dataset):
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    """A finite float from a DICOM value (DS/IS/US, or a one-item list), else None."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) == 1 else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _join(value: Any) -> str:
    items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
    return ":".join(str(v) for v in items)


def _spaced(keyword: str) -> str:
    """'ImagerPixelSpacing' -> 'imager pixel spacing' for notes."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", keyword).lower()
