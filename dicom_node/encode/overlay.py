"""The overlay series: each key image with the result burned in, as a Secondary Capture Image
(PS3.3 A.8.1) in a new series of the source study, for viewers that show neither SEG nor SR.

Every image carries the banner "AI RESULT - NOT FOR DIAGNOSIS" with the model's name and
version, Burned In Annotation YES, Image Type DERIVED\\SECONDARY and a Source Image Sequence
naming the image (and frame) it was drawn from (PS3.3 C.7.6.1.1.2, C.7.6.1.1.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode.common import finish, series_description
from dicom_node.encode.source import character_set, tolerant_source
from dicom_node.encode.text import shape_text
from dicom_node.encode.types import EncodeContext
from dicom_node.render import RGB, Box, display_image, draw_result

OVERLAY_SERIES_NUMBER = 9004
BANNER = "AI RESULT - NOT FOR DIAGNOSIS"
"""Burned into every overlay image (STANDARDS.md "KOS and overlays"); the 5 x 7 font has no en
dash, so a hyphen stands for it."""

_MIN_SIDE = 512
"""Small images are enlarged by a whole factor to about this size, so the text stays legible."""


@dataclass(frozen=True, eq=False)
class OverlayImage:
    """One key image and what to draw on it: ``source`` is the stored image with its pixel
    data, ``frame`` the 0-based frame of a multi-frame source; masks, boxes and the heatmap are
    on the source's pixel grid; ``caption`` names the finding (e.g. "IPH 0.93")."""

    source: Dataset
    caption: str
    frame: int | None = None
    masks: tuple[tuple[np.ndarray, RGB], ...] = ()
    boxes: tuple[Box, ...] = ()
    heatmap: np.ndarray | None = field(default=None)

    @property
    def key(self) -> str:
        """The image (and frame) it shows: names its derived UID."""
        frame = "" if self.frame is None else f":{self.frame}"
        return f"{self.source.SOPInstanceUID}{frame}"


def magnification(rows: int, columns: int) -> int:
    """The whole factor that brings the larger side to about 512 pixels (1 for large images)."""
    return max(1, _MIN_SIDE // max(rows, columns))


def picture(image: OverlayImage, ctx: EncodeContext) -> np.ndarray:
    """The overlay's RGB pixels (enlarged by `magnification`) with the banner burned in."""
    gray = display_image(image.source, image.frame)
    k = magnification(*gray.shape)

    def grow(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, k, axis=0), k, axis=1) if k > 1 else a

    banner = "\n".join((BANNER, f"{ctx.algorithm.name} {ctx.algorithm.version}",
                        image.caption))
    return draw_result(
        grow(gray),
        masks=[(grow(m.astype(bool)), c) for m, c in image.masks],
        boxes=[Box(b.x0 * k, b.y0 * k, b.x1 * k, b.y1 * k, b.label, b.color)
               for b in image.boxes],
        heatmap=None if image.heatmap is None else grow(image.heatmap),
        banner=banner,
    )


def encode_overlay(images: Sequence[OverlayImage], ctx: EncodeContext) -> list[Dataset]:
    """One Secondary Capture Image per key image, all in one new series of the source study,
    with UIDs derived from the job and the image shown (a re-run replaces them).

    Raises:
        ValueError: no image, or the images are not of one study.
        Exception: as ``Dataset.pixel_array`` when a source's pixels cannot be decoded.
    """
    if not images:
        raise ValueError("an overlay series needs at least one image")
    studies = {str(i.source.StudyInstanceUID) for i in images}
    if len(studies) != 1:
        raise ValueError("overlay images must come from one study")
    when = ctx.clock()
    out = []
    for number, image in enumerate(images, start=1):
        out.append(_encode_one(image, number, ctx, when))
    return out


def _encode_one(image: OverlayImage, number: int, ctx: EncodeContext,
                when: datetime) -> Dataset:
    original = image.source
    source = tolerant_source(original)
    pixels = picture(image, ctx)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=ctx.uids.uid("overlay.series"),
        series_number=OVERLAY_SERIES_NUMBER,
        sop_instance_uid=ctx.uids.uid(f"overlay.sop:{image.key}"),
        instance_number=number,
        manufacturer=ctx.algorithm.manufacturer,
        patient_orientation=patient_orientation(original),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    charset = character_set(original)
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "NO"
    sc.SeriesDescription = series_description(ctx, "overlay", original)
    sc.ManufacturerModelName = ctx.algorithm.name
    sc.SoftwareVersions = ctx.algorithm.version
    sc.DerivationDescription = shape_text(
        f"{BANNER}: {image.caption} drawn by {ctx.algorithm.name} {ctx.algorithm.version}",
        "ST", charset)
    sc.ImageComments = shape_text(f"{BANNER}. {image.caption}", "LT", charset)
    sc.SourceImageSequence = [_source_reference(original, image.frame)]
    # Type 2C (PS3.3 C.7.3.1): the source's side, empty when it states none
    sc.Laterality = original.get("Laterality", "")
    finish(sc, ctx, when, source, original)
    return sc


def _source_reference(source: Dataset, frame: int | None) -> Dataset:
    """A Source Image Sequence item (PS3.3 C.7.6.1.1.3, Image SOP Instance Reference Macro):
    the image, and its 1-based frame for a multi-frame source."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame is not None and int(source.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = frame + 1
    return item


def patient_orientation(source: Dataset) -> tuple[str, str]:
    """The directions of the image's rows and columns (PS3.3 C.7.6.1.1.1), from Image
    Orientation (Patient) when present, else the source's own Patient Orientation, else the
    axial convention (L, P)."""
    iop = source.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:
        return _direction(iop[:3]), _direction(iop[3:])
    own = source.get("PatientOrientation")
    if own is not None and len(own) == 2 and all(own):
        return str(own[0]), str(own[1])
    return "L", "P"


def _direction(cosines: Sequence[float]) -> str:
    """The letters of a direction in LPS (+x left, +y posterior, +z head; PS3.3 C.7.6.1.1.1),
    largest component first, components under 0.25 left out."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    parts = sorted(((abs(float(v)), i, float(v)) for i, v in enumerate(cosines)), reverse=True)
    out = ""
    for size, axis, value in parts:
        if size >= 0.25:
            positive, negative = letters[axis]
            out += positive if value > 0 else negative
    return out or "L"


