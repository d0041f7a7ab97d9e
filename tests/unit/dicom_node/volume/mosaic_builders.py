"""Test data: Siemens CSA headers and mosaic images built from a known volume.

The writer follows the CSA2 layout that `dicom_node.volume.csa` documents; the mosaic places the
slices of a classic series as tiles and moves Image Position (Patient) to the top-left of the
whole mosaic, the way Siemens scanners do (the rule in `dicom_node.volume.mosaic`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series


def csa2(tags: Mapping[str, Sequence[str]]) -> bytes:
    """A CSA2 (``SV10``) block with `tags`; each item text NUL-terminated, padded to 4 bytes."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(tags), 77)
    for name, values in tags.items():
        out += struct.pack("<64si4s3i", name.encode("latin-1"), len(values), b"DS\x00\x00", 3,
                           len(values), 77)
        for value in values:
            text = value.encode("latin-1") + b"\x00"
            out += struct.pack("<4i", len(text), len(text), 77, len(text))
            out += text + b"\x00" * (-len(text) % 4)
    return bytes(out)


def csa1(tags: Mapping[str, Sequence[str]]) -> bytes:
    """The older CSA1 layout (no ``SV10`` prefix; item length = first word - first tag's
    item count)."""
    first = len(next(iter(tags.values())))
    out = bytearray(struct.pack("<2I", len(tags), 77))
    for name, values in tags.items():
        out += struct.pack("<64si4s3i", name.encode("latin-1"), len(values), b"IS\x00\x00", 6,
                           len(values), 77)
        for value in values:
            text = value.encode("latin-1") + b"\x00"
            out += struct.pack("<4i", len(text) + first, len(text), 77, len(text))
            out += text + b"\x00" * (-len(text) % 4)
    return bytes(out)


def add_csa(ds: Dataset, block: bytes) -> None:
    ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", block)


def tile_volume(volume: np.ndarray) -> tuple[np.ndarray, int]:
    """(slices, rows, columns) -> one mosaic image and its tiles per side (empty tiles zero)."""
    count, rows, columns = volume.shape
    grid = math.ceil(math.sqrt(count))
    out = np.zeros((grid * rows, grid * columns), dtype=volume.dtype)
    for t in range(count):
        r, c = divmod(t, grid)
        out[r * rows:(r + 1) * rows, c * columns:(c + 1) * columns] = volume[t]
    return out, grid


def mosaic_image(
    volume: np.ndarray, spacing: Sequence[float], *, origin: Sequence[float],
    row_direction: Sequence[float] = (1.0, 0.0, 0.0),
    column_direction: Sequence[float] = (0.0, 1.0, 0.0),
    slice_normal: Sequence[float] | None = None, count_in: str = "csa",
    b_value: float | None = None, identity: StudyIdentity | None = None,
    spec: SeriesSpec | None = None,
) -> Dataset:
    """One Siemens mosaic of `volume` (uint16 stored values), slice k at
    ``origin + k * spacing[0] * normal``, normal = `slice_normal` or row x column.

    `count_in` says where NumberOfImagesInMosaic goes: "csa" (CSA2 image header, with
    SliceNormalVector and B_value), "csa1" (CSA1 layout) or "private" ((0019,100A) and the
    b-value in (0019,100C), no CSA header).
    """
    row, col = np.asarray(row_direction, float), np.asarray(column_direction, float)
    normal = np.asarray(slice_normal if slice_normal is not None else np.cross(row, col), float)
    spec = spec or SeriesSpec(modality="MR", series_description="ep2d_diff_mosaic",
                              image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"))
    template = volume_series(volume[:1], spacing, identity=identity or StudyIdentity(),
                             spec=spec, origin=origin, row_direction=row,
                             column_direction=col)[0]
    pixels, _grid = tile_volume(volume.astype(np.uint16))
    count, rows, columns = volume.shape
    ds = template
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.SpacingBetweenSlices = float(spacing[0])
    first = np.asarray(origin, float)
    mosaic_ipp = (first - col * spacing[1] * (ds.Rows - rows) / 2
                  - row * spacing[2] * (ds.Columns - columns) / 2)
    ds.ImagePositionPatient = [round(float(v), 6) for v in mosaic_ipp]
    del ds.SliceLocation
    ds.SliceThickness = float(spacing[0])
    tags: dict[str, list[str]] = {"NumberOfImagesInMosaic": [str(count)],
                                  "SliceNormalVector": [f"{v:.8f}" for v in normal]}
    if b_value is not None:
        tags["B_value"] = [f"{b_value:g}"]
    if count_in == "csa":
        add_csa(ds, csa2(tags))
    elif count_in == "csa1":
        add_csa(ds, csa1(tags))
    else:
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0A, "US", count)
        if b_value is not None:
            block.add_new(0x0C, "IS", str(int(b_value)))
    return ds
