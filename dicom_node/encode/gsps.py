"""Grayscale Softcopy Presentation State (PS3.3 A.33.1) drawing a result over the original
images, for viewers that show presentation states but not SEG or SR: mask outlines as closed
POLYLINE graphics, boxes as closed rectangles, and text objects with the finding, its
probability and the model's name and version (PS3.3 C.10.5 Graphic Annotation Module).

Built on ``highdicom.pr``, which writes the Displayed Area Selection of each image and the
Referenced Series Sequence (images and frames); the VOI window is the source's own (or, for an
image without one, a robust window of its pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode.common import finish, series_description
from dicom_node.encode.source import character_set, tolerant_first
from dicom_node.encode.text import shape_text
from dicom_node.encode.types import EncodeContext
from dicom_node.render import header_window, rescaled, robust_window

GSPS_SERIES_NUMBER = 9005
LAYER = "AI"
_MAX_TEXT = 64


@dataclass(frozen=True, eq=False)
class Annotation:
    """What to draw on one source image (``frame``: 0-based frame of a multi-frame source):
    outlines (bool masks on its pixel grid), boxes (x0, y0, x1, y1 in pixel coordinates, each
    with its label) and lines of text."""

    source: Dataset
    frame: int | None = None
    masks: tuple[np.ndarray, ...] = ()
    boxes: tuple[tuple[tuple[float, float, float, float], str], ...] = ()
    texts: tuple[str, ...] = ()
    pixels: Dataset | None = field(default=None)
    """The source with its pixel data, when it has no window of its own (for the VOI)."""


def contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed outlines of a bool (rows, columns) mask along pixel edges, as (n, 2) float arrays
    of (column, row) points in SCOORD pixel coordinates (PS3.3 C.10.5.1.2: (0, 0) is the top
    left corner of the top left pixel), the first point repeated last, straight runs merged.
    One outline per boundary (outer edges and holes alike)."""
    m = np.pad(mask.astype(bool), 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    rows, cols = np.nonzero(m[1:-1, 1:-1])
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        pr, pc = r + 1, c + 1
        # clockwise around the pixel (x right, y down), one edge per side that borders outside
        if not m[pr - 1, pc]:
            edges.setdefault((c, r), []).append((c + 1, r))
        if not m[pr, pc + 1]:
            edges.setdefault((c + 1, r), []).append((c + 1, r + 1))
        if not m[pr + 1, pc]:
            edges.setdefault((c + 1, r + 1), []).append((c, r + 1))
        if not m[pr, pc - 1]:
            edges.setdefault((c, r + 1), []).append((c, r))
    loops: list[np.ndarray] = []
    while edges:
        start = next(iter(edges))
        points = [start]
        current = start
        while True:
            nexts = edges[current]
            following = nexts.pop()
            if not nexts:
                del edges[current]
            current = following
            points.append(current)
            if current == start:
                break
        loops.append(_merge_straight(np.asarray(points, dtype=np.float32)))
    return loops


def _merge_straight(points: np.ndarray) -> np.ndarray:
    """The closed polyline without the points in the middle of straight runs."""
    ring = points[:-1]
    before = np.roll(ring, 1, axis=0)
    after = np.roll(ring, -1, axis=0)
    cross = ((ring - before)[:, 0] * (after - ring)[:, 1]
             - (ring - before)[:, 1] * (after - ring)[:, 0])
    kept = ring[cross != 0]
    if len(kept) < 3:
        kept = ring
    return np.vstack([kept, kept[:1]])


def encode_gsps(annotations: Sequence[Annotation], ctx: EncodeContext) -> Dataset:
    """A GSPS referencing the annotated images with the result drawn as graphics and text.

    Raises:
        ValueError: no annotation, or images of more than one study.
    """
    if not annotations:
        raise ValueError("a presentation state needs at least one annotated image")
    images = _unique_sources(annotations)
    if len({str(ds.StudyInstanceUID) for ds in images}) != 1:
        raise ValueError("annotated images must come from one study")
    referenced = tolerant_first(images)
    charset = character_set(images[0])
    layer = hd.pr.GraphicLayer(layer_name=LAYER, order=1,
                               description="AI result, not for diagnosis")
    model = f"{ctx.algorithm.name} {ctx.algorithm.version}"
    graphic_annotations = [
        _annotation(a, ref, layer, model, charset)
        for a, ref in zip(annotations, _matching(annotations, images, referenced), strict=True)
    ]
    when = ctx.clock()
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=referenced,
        series_instance_uid=ctx.uids.uid("gsps.series"),
        series_number=GSPS_SERIES_NUMBER,
        sop_instance_uid=ctx.uids.uid("gsps.sop"),
        instance_number=1,
        manufacturer=ctx.algorithm.manufacturer,
        manufacturer_model_name=ctx.algorithm.name,
        software_versions=ctx.algorithm.version,
        device_serial_number=ctx.algorithm.weights_sha256[:16],
        content_label="AI_RESULT",
        content_description=shape_text(f"AI result, not for diagnosis: {model}", "LO",
                                       charset),
        graphic_annotations=graphic_annotations,
        graphic_layers=[layer],
        content_creator_name=None,
        institution_name=ctx.institution_name,
        voi_lut_transformations=_voi(annotations),
    )
    gsps.SeriesDescription = series_description(ctx, "GSPS", images[0])
    gsps.Laterality = images[0].get("Laterality", "")  # Type 2C (PS3.3 C.7.3.1)
    finish(gsps, ctx, when, referenced[0], images[0])
    # the GSPS IOD has Presentation Creation Date/Time instead of Content Date/Time
    del gsps.ContentDate, gsps.ContentTime
    return gsps


def _unique_sources(annotations: Sequence[Annotation]) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for a in annotations:
        seen.setdefault(str(a.source.SOPInstanceUID), a.source)
    return list(seen.values())


def _matching(annotations: Sequence[Annotation], images: Sequence[Dataset],
              referenced: Sequence[Dataset]) -> list[Dataset]:
    by_uid = {str(i.SOPInstanceUID): r for i, r in zip(images, referenced, strict=True)}
    return [by_uid[str(a.source.SOPInstanceUID)] for a in annotations]


def _annotation(a: Annotation, ref: Dataset, layer: hd.pr.GraphicLayer, model: str,
                charset: str | list[str] | None) -> hd.pr.GraphicAnnotation:
    rows, cols = int(a.source.Rows), int(a.source.Columns)
    graphics = []
    for mask in a.masks:
        for loop in contours(mask):
            graphics.append(hd.pr.GraphicObject(graphic_type="POLYLINE", graphic_data=loop,
                                                units="PIXEL"))
    texts = []
    for (x0, y0, x1, y1), label in a.boxes:
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], np.float32)
        graphics.append(hd.pr.GraphicObject(graphic_type="POLYLINE", graphic_data=corners,
                                            units="PIXEL"))
        texts.append(hd.pr.TextObject(
            text_value=shape_text(label, "ST", charset, max_characters=_MAX_TEXT),
            units="PIXEL", anchor_point=(float(x0), float(y0)), anchor_point_visible=False))
    lines = ["AI RESULT - NOT FOR DIAGNOSIS", model, *a.texts]
    line_height = max(rows / 16.0, 1.0)
    for i, line in enumerate(lines):
        top = min(1.0 + i * line_height, rows - 1.0)
        texts.append(hd.pr.TextObject(
            text_value=shape_text(line, "ST", charset, max_characters=_MAX_TEXT),
            units="PIXEL",
            bounding_box=(1.0, top, cols - 1.0, min(top + line_height, float(rows))),
            text_justification="LEFT"))
    frames = int(a.source.get("NumberOfFrames", 1) or 1)
    frame_number = a.frame + 1 if a.frame is not None and frames > 1 else None
    return hd.pr.GraphicAnnotation(referenced_images=[ref], graphic_layer=layer,
                                   referenced_frame_number=frame_number,
                                   graphic_objects=graphics or None,
                                   text_objects=texts)


def _voi(annotations: Sequence[Annotation]) -> list[hd.pr.SoftcopyVOILUTTransformation]:
    """One window per group of images that share it (the source's header window, else a
    percentile window of its pixels when they are given)."""
    groups: dict[tuple[float, float], list[Dataset]] = {}
    for a in _first_per_image(annotations):
        frame = a.frame or 0
        window = header_window(a.source, frame)
        if window is None and a.pixels is not None:
            pixels = np.asarray(a.pixels.pixel_array)
            if int(a.pixels.get("NumberOfFrames", 1) or 1) > 1:
                pixels = pixels[frame]
            window = robust_window(rescaled(a.pixels, frame, pixels))
        if window is not None:
            groups.setdefault((round(window[0], 3), round(window[1], 3)), []).append(a.source)
    return [
        hd.pr.SoftcopyVOILUTTransformation(
            window_center=center, window_width=max(width, 1.0),
            referenced_images=hd.ReferencedImageSequence(referenced_images=images))
        for (center, width), images in groups.items()
    ]


def _first_per_image(annotations: Sequence[Annotation]) -> list[Annotation]:
    seen: dict[str, Annotation] = {}
    for a in annotations:
        seen.setdefault(str(a.source.SOPInstanceUID), a)
    return list(seen.values())
