"""Minimal PNG writer (ISO/IEC 15948 / W3C PNG): 8-bit greyscale or RGB, no dependencies."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (h, w) greyscale or (h, w, 3) RGB image."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("encode_png needs a uint8 (h, w) or (h, w, 3) array")
    h, w = image.shape[:2]
    color = 0 if image.ndim == 2 else 2
    rows = np.ascontiguousarray(image).reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def overlay_png(
    hu: np.ndarray, heat: np.ndarray, center: float = 40.0, width: float = 80.0, alpha: float = 0.45
) -> bytes:
    """A brain-window slice with a heatmap (0..1) blended in red-yellow where it is > 0.2."""
    base = np.clip((hu - (center - width / 2)) / width, 0, 1)
    grey = np.repeat(base[..., None], 3, axis=2)
    h = np.clip(heat, 0, 1)
    color = np.stack([np.ones_like(h), h, np.zeros_like(h)], axis=2)
    a = (alpha * h * (h > 0.2))[..., None]
    rgb = (grey * (1 - a) + color * a) * 255
    return encode_png(rgb.round().astype(np.uint8))
