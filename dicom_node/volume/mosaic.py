"""Siemens mosaics: one classic MR image whose single frame holds N slices as tiles.

Siemens EPI (diffusion, BOLD) is stored as MR Image Storage (PS3.3 A.4) with Image Type
containing ``MOSAIC``: the slices of one volume are tiles of one large image. The number of
slices is the CSA image header's ``NumberOfImagesInMosaic``, or the private element
(0019,xx0A) of ``SIEMENS MR HEADER`` when no CSA header is present.

Rule implemented (the one nibabel, dcm2niix and SPM implement):

* the tiles form a square grid of ``g = ceil(sqrt(N))`` tiles per side; a tile is
  ``Rows / g`` by ``Columns / g`` pixels; slice ``t`` is the tile at grid row ``t // g``, grid
  column ``t % g``; grid places beyond N are empty and ignored;
* Image Orientation (Patient) and Pixel Spacing are those of every slice;
* Image Position (Patient) is the position of the top-left pixel of the whole mosaic as if the
  mosaic were one image centred on the slices, in the plane of the first slice. The first slice's
  top-left pixel therefore lies at ``IPP + c * dr * (Rows - rows)/2 + r * dc * (Columns -
  columns)/2``, with ``r``, ``c`` the row and column direction cosines, ``dr``, ``dc`` the Pixel
  Spacing (between rows, between columns) and ``rows``, ``columns`` the tile size;
* slice ``t`` lies at ``first + t * s * n``: ``n`` the CSA ``SliceNormalVector`` (the direction
  in which Siemens stacks the tiles; when absent, ``r x c``), ``s`` Spacing Between Slices
  (0018,0088), else Slice Thickness (0018,0050).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.volume import csa
from dicom_node.volume.errors import MissingGeometryError

SIEMENS_MR_HEADER = "SIEMENS MR HEADER"
_MOSAIC_COUNT_OFFSET = 0x0A


@dataclass(frozen=True)
class MosaicLayout:
    """Where the slices of one mosaic lie: tile count and grid, tile size, and each slice's
    Image Position (Patient) (LPS mm, top-left pixel of the tile)."""

    count: int
    tiles_per_row: int
    rows: int
    columns: int
    positions: tuple[tuple[float, float, float], ...]
    normal: tuple[float, float, float]


def is_mosaic(ds: Dataset) -> bool:
    """True when Image Type (PS3.3 C.7.6.1.1.2) contains ``MOSAIC``."""
    value = ds.get("ImageType")
    items = [value] if isinstance(value, str) else list(value or [])
    return any(str(v).strip().upper() == "MOSAIC" for v in items)


def _private_count(ds: Dataset) -> int | None:
    try:
        block = ds.private_block(0x0019, SIEMENS_MR_HEADER)
        element = ds.get(block.get_tag(_MOSAIC_COUNT_OFFSET))
    except (KeyError, ValueError):
        return None
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):  # US read without a dictionary entry: little endian
        value = int.from_bytes(value[:2], "little") if len(value) >= 2 else None
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def slice_count(ds: Dataset, header: csa.CsaHeader | None = None) -> int | None:
    """NumberOfImagesInMosaic from the CSA image header, else (0019,xx0A); None when neither."""
    header = csa.header(ds) if header is None else header
    value = csa.number(header, "NumberOfImagesInMosaic")
    return int(value) if value is not None else _private_count(ds)


def _vector(values: Any, count: int) -> np.ndarray | None:
    try:
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) else None


def layout(ds: Dataset) -> MosaicLayout:
    """The slices of mosaic image `ds` (see the module docstring for the rule).

    Raises:
        MissingGeometryError: no slice count, a tile grid that does not divide the image,
            or no Image Position / Orientation / Pixel Spacing.
    """
    uid = ds.get("SOPInstanceUID", "?")
    header = csa.header(ds)
    count = slice_count(ds, header)
    if count is None or count < 1:
        raise MissingGeometryError(f"mosaic {uid}: number of images in the mosaic unknown")
    grid = math.ceil(math.sqrt(count))
    mosaic_rows, mosaic_columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if mosaic_rows % grid or mosaic_columns % grid or not mosaic_rows or not mosaic_columns:
        raise MissingGeometryError(
            f"mosaic {uid}: {mosaic_rows}x{mosaic_columns} pixels do not divide into "
            f"{grid}x{grid} tiles")
    rows, columns = mosaic_rows // grid, mosaic_columns // grid
    position = _vector(ds.get("ImagePositionPatient"), 3)
    orientation = _vector(ds.get("ImageOrientationPatient"), 6)
    spacing = _vector(ds.get("PixelSpacing"), 2)
    if position is None or orientation is None or spacing is None:
        raise MissingGeometryError(
            f"mosaic {uid}: Image Position, Image Orientation or Pixel Spacing missing")
    row_dir, column_dir = orientation[:3], orientation[3:]
    normal = _vector(csa.numbers(header, "SliceNormalVector"), 3)
    if normal is None or np.linalg.norm(normal) < 1e-6:
        normal = np.cross(row_dir, column_dir)
    normal = normal / np.linalg.norm(normal)
    step = _step(ds)
    first = (position + column_dir * spacing[0] * (mosaic_rows - rows) / 2
             + row_dir * spacing[1] * (mosaic_columns - columns) / 2)
    positions = tuple(
        (float(p[0]), float(p[1]), float(p[2])) for p in (first + t * step * normal
                                                          for t in range(count)))
    return MosaicLayout(count, grid, rows, columns, positions,
                        (float(normal[0]), float(normal[1]), float(normal[2])))


def _step(ds: Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = abs(float(ds.get(keyword, "") or 0))
        except (TypeError, ValueError):
            value = 0.0
        if value > 0:
            return value
    raise MissingGeometryError(
        f"mosaic {ds.get('SOPInstanceUID', '?')}: neither Spacing Between Slices nor Slice "
        "Thickness gives the slice step")


def tile(mosaic: np.ndarray, tiles_per_row: int, index: int) -> np.ndarray:
    """Slice `index` of a (Rows, Columns) mosaic with `tiles_per_row` tiles per side."""
    rows, columns = mosaic.shape[0] // tiles_per_row, mosaic.shape[1] // tiles_per_row
    r, c = divmod(index, tiles_per_row)
    return mosaic[r * rows:(r + 1) * rows, c * columns:(c + 1) * columns]
