"""Why a series cannot be turned into a volume.

Every problem found while reading is reported as one of these, never guessed around. Each class
carries a stable machine `reason` (stored in the job record) and a message made of counts,
distances, angles and UIDs only: no patient data. All are permanent: the same files fail the same
way until different files arrive.
"""

from __future__ import annotations

from dicom_node.errors import PermanentError


class SeriesReadError(PermanentError):
    """Base class: the series cannot be read into a volume as it is."""

    reason: str = "unreadable_series"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptySeriesError(SeriesReadError):
    """No file or no image frame was given."""

    reason = "empty_series"


class MixedSeriesError(SeriesReadError):
    """The files belong to more than one series or frame of reference (PS3.3 C.7.4.1)."""

    reason = "mixed_series"


class MissingGeometryError(SeriesReadError):
    """Image Position / Orientation (Patient) or Pixel Spacing absent or malformed
    (PS3.3 C.7.6.2, C.7.6.16.2.3)."""

    reason = "missing_geometry"


class MixedOrientationError(SeriesReadError):
    """Slices of the series do not share one Image Orientation (Patient)."""

    reason = "mixed_orientation"


class MixedSizeError(SeriesReadError):
    """Slices differ in Rows, Columns or Pixel Spacing."""

    reason = "mixed_size"


class DuplicatePositionError(SeriesReadError):
    """Two or more slices lie at the same place along the slice normal."""

    reason = "duplicate_position"


class NonUniformSpacingError(SeriesReadError):
    """The distance between consecutive slices varies beyond the tolerance, or the slice
    positions do not lie on one straight line."""

    reason = "non_uniform_spacing"


class SliceGapError(NonUniformSpacingError):
    """Some steps are whole multiples of the usual one: slices are missing."""

    reason = "slice_gap"


class GantryTiltError(SeriesReadError):
    """The slices are stacked at an angle to their normal (gantry tilt) and correction by
    resampling was not allowed."""

    reason = "gantry_tilt"

    def __init__(self, message: str, angle_deg: float) -> None:
        super().__init__(message)
        self.angle_deg = angle_deg


class UnsupportedPixelDataError(SeriesReadError):
    """Pixel data that cannot be decoded or is not single-sample greyscale."""

    reason = "unsupported_pixel_data"


class RadiographReadError(SeriesReadError):
    """One projection radiograph (CR/DX) cannot be read for a detection model.

    `reason` says why, one of: ``unreadable_file`` (not a DICOM file), ``unsupported_photometric``
    (not single-sample MONOCHROME1/2, PS3.3 C.7.6.3.1.2), ``unreadable_pixels`` (no Pixel Data,
    or stored bytes no installed decoder can turn into pixels).
    """

    reason = "unreadable_radiograph"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
