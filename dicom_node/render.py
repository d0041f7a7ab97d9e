"""Images for people: a stored DICOM image as display grey levels, a result drawn on it in
colour (mask outlines, labelled boxes, a heatmap, a banner), and PNG bytes.

Used by the overlay series encoder (``dicom_node.encode.overlay``) and the operator console's
previews, so that both show the same picture. Grey levels follow the standard display
pipeline (PS3.3 C.11: Modality LUT / rescale, then the VOI window, MONOCHROME1 inverted); text
uses a built-in 5 x 7 bitmap font, so no font file is needed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Box:
    """A box to draw, in pixel coordinates (x = column, y = row; (0, 0) the top left corner of
    the top left pixel, as SCOORD has it), with its label text (e.g. "FRACTURE 0.87")."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    color: RGB

    def __post_init__(self) -> None:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError("box must have positive width and height")


# ---------------------------------------------------------------------------------------------
# grey levels


def _item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The first item of a functional group macro for ``frame`` (per-frame before shared), or
    None (PS3.3 C.7.6.16)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > index and sequence in seq[index]:
            inner = seq[index].get(sequence)
            if inner:
                item: Dataset = inner[0]
                return item
    return None


def _first(value: Any) -> float | None:
    """The first number of a (possibly multi-valued) DS/IS element, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes):
        return float(value)
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def header_window(ds: Dataset, frame: int) -> tuple[float, float] | None:
    """(center, width) of the image's first window, or its frame's (enhanced images); None
    when it has none."""
    source = _item(ds, frame, "FrameVOILUTSequence") or ds
    center = _first(source.get("WindowCenter"))
    width = _first(source.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    return center, width


def rescaled(ds: Dataset, frame: int, pixels: np.ndarray) -> np.ndarray:
    """Stored values through Rescale Slope / Intercept (the frame's Pixel Value
    Transformation in enhanced images), as float."""
    source = _item(ds, frame, "PixelValueTransformationSequence") or ds
    slope = _first(source.get("RescaleSlope"))
    intercept = _first(source.get("RescaleIntercept"))
    out = pixels.astype(np.float64)
    if slope is not None:
        out = out * slope
    if intercept is not None:
        out = out + intercept
    return out


def window_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The linear VOI window of PS3.3 C.11.2.1.2.1 onto 0..255."""
    low = center - 0.5 - (width - 1) / 2
    scaled = ((values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5) * 255
    out = np.where(values <= low, 0.0, np.clip(scaled, 0, 255))
    return np.rint(out).astype(np.uint8)


def robust_window(values: np.ndarray) -> tuple[float, float]:
    """A window from the 1st to the 99th percentile (for images without one in the header)."""
    lo, hi = (float(v) for v in np.percentile(values, (1.0, 99.0)))
    if hi <= lo:
        hi = lo + 1.0
    return (lo + hi) / 2 + 0.5, hi - lo + 1


def display_image(ds: Dataset, frame: int | None = None) -> np.ndarray:
    """The grey levels a viewer would show for one stored image, uint8 (rows, columns).

    ``frame`` is the 0-based frame of a multi-frame image (default the first). Rescale or the
    frame's Pixel Value Transformation, then the header's window (the first one when several
    are given; the frame's VOI LUT in enhanced images) or a robust percentile window, inverted
    for MONOCHROME1. Colour images give their luminance (ITU-R BT.601).

    Raises:
        ValueError: ``frame`` is outside the image's frames.
        Exception: as ``Dataset.pixel_array`` when the pixel data cannot be decoded.
    """
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = 0 if frame is None else int(frame)
    if not 0 <= index < frames:
        raise ValueError(f"frame {index} is outside the image's {frames} frame(s)")
    pixels = np.asarray(ds.pixel_array)
    if frames > 1:
        pixels = pixels[index]
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and pixels.ndim == 3:
        rgb = pixels.astype(np.float64)
        if rgb.max() > 255:
            rgb = rgb * (255.0 / float(rgb.max()))
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        return np.rint(np.clip(luma, 0, 255)).astype(np.uint8)
    values = rescaled(ds, index, pixels)
    center_width = header_window(ds, index) or robust_window(values)
    out = window_uint8(values, *center_width)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return out


# ---------------------------------------------------------------------------------------------
# drawing


def draw_result(gray: np.ndarray, *, masks: Sequence[tuple[np.ndarray, RGB]] = (),
                boxes: Sequence[Box] = (), heatmap: np.ndarray | None = None,
                banner: str | None = None) -> np.ndarray:
    """A colour picture of ``gray`` (uint8 rows x columns) with a result drawn on it.

    ``heatmap`` (float in [0, 1], the image's shape) is blended as a colour map where it is
    above 0.2; each mask (bool, the image's shape) is drawn as its outline in its colour; each
    box as a rectangle with its label above it (inside when there is no room); ``banner`` is
    burned in on a dark band at the top, wrapped to the image's width.

    Raises:
        ValueError: an array does not have the image's shape.
    """
    if gray.ndim != 2:
        raise ValueError("draw_result needs a 2-D grey image")
    shape = gray.shape
    out = np.repeat(gray.astype(np.float32)[..., None], 3, axis=2)
    if heatmap is not None:
        if heatmap.shape != shape:
            raise ValueError(f"heatmap shape {heatmap.shape} differs from the image's {shape}")
        h = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
        alpha = (0.5 * h * (h > 0.2))[..., None]
        out = out * (1 - alpha) + heat_colors(h) * alpha
    canvas = np.rint(out).clip(0, 255).astype(np.uint8)
    scale = text_scale(shape)
    thickness = max(1, min(shape) // 256)
    for mask, color in masks:
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {shape}")
        canvas[outline(mask.astype(bool), thickness)] = color
    for box in boxes:
        _draw_box(canvas, box, thickness, scale)
    if banner:
        _draw_banner(canvas, banner, scale)
    return canvas


def heat_colors(h: np.ndarray) -> np.ndarray:
    """A blue-cyan-yellow-red colour map of values in [0, 1], float (..., 3) in 0..255."""
    r = np.clip(2.0 * h - 0.5, 0, 1)
    g = np.clip(1.5 - np.abs(2.5 * h - 1.5), 0, 1)
    b = np.clip(1.0 - 2.0 * h, 0, 1)
    return np.stack([r, g, b], axis=-1) * 255.0


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``thickness`` pixels of its edge (4-connected)."""
    inner = mask.copy()
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (inner & padded[:-2, 1:-1] & padded[2:, 1:-1]
                 & padded[1:-1, :-2] & padded[1:-1, 2:])
    result: np.ndarray = mask & ~inner
    return result


def text_scale(shape: tuple[int, ...]) -> int:
    """Glyph magnification for an image: about 40 characters across."""
    return max(1, int(shape[1]) // 240)


def _draw_box(canvas: np.ndarray, box: Box, thickness: int, scale: int) -> None:
    rows, cols = canvas.shape[:2]
    x0 = int(np.clip(np.floor(box.x0), 0, cols - 1))
    x1 = int(np.clip(np.ceil(box.x1) - 1, 0, cols - 1))
    y0 = int(np.clip(np.floor(box.y0), 0, rows - 1))
    y1 = int(np.clip(np.ceil(box.y1) - 1, 0, rows - 1))
    t = thickness
    canvas[y0:y0 + t, x0:x1 + 1] = box.color
    canvas[max(y1 - t + 1, 0):y1 + 1, x0:x1 + 1] = box.color
    canvas[y0:y1 + 1, x0:x0 + t] = box.color
    canvas[y0:y1 + 1, max(x1 - t + 1, 0):x1 + 1] = box.color
    if box.label:
        text = text_mask(box.label, scale)
        top = y0 - text.shape[0] - 2 if y0 - text.shape[0] - 2 >= 0 else y0 + t + 1
        _stamp(canvas, text, top, x0, box.color, shadow=True)


def wrap(text: str, width_chars: int) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width_chars`` characters (a longer
    word is cut)."""
    width_chars = max(1, width_chars)
    lines: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > width_chars:
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:width_chars])
            word = word[width_chars:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width_chars:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _draw_banner(canvas: np.ndarray, banner: str, scale: int) -> None:
    cols = canvas.shape[1]
    lines: list[str] = []
    for paragraph in banner.splitlines():
        lines.extend(wrap(paragraph, (cols - 4) // (6 * scale)))
    line_height = (GLYPH_HEIGHT + 2) * scale
    band = min(canvas.shape[0], 2 + line_height * len(lines))
    canvas[:band] = (canvas[:band].astype(np.float32) * 0.25).astype(np.uint8)
    for i, line in enumerate(lines):
        _stamp(canvas, text_mask(line, scale), 2 + i * line_height, 2, (255, 255, 0))


def _stamp(canvas: np.ndarray, text: np.ndarray, top: int, left: int, color: RGB,
           shadow: bool = False) -> None:
    """Paint ``text`` (bool) at (top, left), clipped to the canvas."""
    rows, cols = canvas.shape[:2]
    h = min(text.shape[0], rows - top)
    w = min(text.shape[1], cols - left)
    if h <= 0 or w <= 0 or top < 0 or left < 0:
        return
    region = canvas[top:top + h, left:left + w]
    if shadow:
        region[:] = (region.astype(np.float32) * 0.3).astype(np.uint8)
    region[text[:h, :w]] = color


# ---------------------------------------------------------------------------------------------
# PNG


def png_bytes(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (rows, columns) grey or (rows, columns, 3) RGB image.

    Raises:
        ValueError: another dtype or shape.
    """
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3
                                                            and image.shape[2] == 3)):
        raise ValueError("png_bytes needs a uint8 (rows, columns) or (rows, columns, 3) array")
    buffer = io.BytesIO()
    mode = "L" if image.ndim == 2 else "RGB"
    Image.fromarray(np.ascontiguousarray(image), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# a 5 x 7 bitmap font: upper case, digits and the symbols the node writes; lower case is drawn
# as upper case, any other character as a hollow box

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7

_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    " ": (".....",) * 7,
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    ";": (".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "_": (".....", ".....", ".....", ".....", ".....", ".....", "#####"),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    "%": ("##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"),
    "(": ("...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."),
    ")": (".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."),
    "=": (".....", ".....", "#####", ".....", "#####", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "<": ("...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."),
    ">": (".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."),
    "'": ("..#..", "..#..", ".#...", ".....", ".....", ".....", "....."),
    "#": (".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
    "!": ("..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."),
}
_UNKNOWN = ("#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####")
_ALIASES = {"\u2013": "-", "\u2014": "-", "\u00b3": "3"}


@cache
def glyph(char: str) -> np.ndarray:
    """The bool (7, 5) bitmap of ``char`` (upper-cased; unknown characters as a hollow box)."""
    c = _ALIASES.get(char, char).upper()
    rows = _GLYPHS.get(c, _UNKNOWN)
    return np.array([[p == "#" for p in row] for row in rows], dtype=bool)


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """A bool (7 * scale, 6 * scale * len(text)) bitmap of one line of text (a column of space
    after each glyph).

    Raises:
        ValueError: ``scale`` below 1.
    """
    if scale < 1:
        raise ValueError("text scale must be at least 1")
    if not text:
        return np.zeros((GLYPH_HEIGHT * scale, 0), dtype=bool)
    line = np.concatenate([np.pad(glyph(c), ((0, 0), (0, 1))) for c in text], axis=1)
    return np.kron(line, np.ones((scale, scale), dtype=bool)).astype(bool)
