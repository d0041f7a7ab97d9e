"""Series reading: DICOM files of one series into a volume with LPS geometry
(`read_series`), with every geometric problem reported as a typed `SeriesReadError`."""

from dicom_node.volume.errors import (
    DuplicatePositionError,
    EmptySeriesError,
    GantryTiltError,
    MissingGeometryError,
    MixedOrientationError,
    MixedSeriesError,
    MixedSizeError,
    NonUniformSpacingError,
    SeriesReadError,
    SliceGapError,
    UnsupportedPixelDataError,
)
from dicom_node.volume.model import ReadOptions, SeriesVolume, SliceRef
from dicom_node.volume.reader import read_headers, read_series

__all__ = [
    "DuplicatePositionError",
    "EmptySeriesError",
    "GantryTiltError",
    "MissingGeometryError",
    "MixedOrientationError",
    "MixedSeriesError",
    "MixedSizeError",
    "NonUniformSpacingError",
    "ReadOptions",
    "SeriesReadError",
    "SeriesVolume",
    "SliceGapError",
    "SliceRef",
    "UnsupportedPixelDataError",
    "read_headers",
    "read_series",
]
