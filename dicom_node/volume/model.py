"""The plain values a series is read into: voxels, LPS geometry, and header-only metadata.

Axis convention: the voxel array is indexed ``(slice, row, column)``. `spacing` and the columns of
`direction` follow that order, so the LPS position (PS3.3 C.7.6.2.1.1) of voxel ``(k, i, j)`` is
``affine @ (k, i, j, 1)`` = ``origin + k*dz*direction[:, 0] + i*dy*direction[:, 1] +
j*dx*direction[:, 2]``. `direction[:, 2]` is the row direction (first triplet of Image
Orientation), `direction[:, 1]` the column direction, `direction[:, 0]` the slice normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class ReadOptions:
    """Tolerances and permissions of the series reader.

    `correct_tilt` allows a gantry-tilted series to be resampled onto a grid whose slices stack
    along their normal; without it such a series is refused. Distances are in mm, angles in
    degrees; a step counts as uniform when it differs from the median step by no more than
    ``max(spacing_tolerance_mm, spacing_tolerance_ratio * median)``.
    """

    correct_tilt: bool = False
    tilt_tolerance_deg: float = 0.1
    orientation_tolerance_deg: float = 0.1
    spacing_tolerance_mm: float = 0.05
    spacing_tolerance_ratio: float = 0.02
    duplicate_tolerance_mm: float = 0.01
    min_slices: int = 1


@dataclass(frozen=True)
class SliceRef:
    """Which stored frame a slice of the volume came from. `frame_number` is 1-based for
    multi-frame instances (PS3.3 C.7.6.6) and None for single-frame ones; `header_index` points
    into `SeriesVolume.headers`; `tile` is the slice's 0-based tile in a Siemens mosaic image
    (`dicom_node.volume.mosaic`), None otherwise."""

    sop_instance_uid: str
    frame_number: int | None
    header_index: int
    tile: int | None = None


@dataclass(frozen=True, eq=False)
class SeriesVolume:
    """One series as a volume.

    `voxels` is float32 (slices, rows, columns): Hounsfield units for CT (Rescale Slope and
    Intercept applied, PS3.3 C.11.1.1.2), stored values otherwise. `headers` holds each source
    instance's data set without Pixel Data, for encoders that reference the source.
    `tilt_deg` is the measured gantry tilt; when `tilt_corrected` the voxels were resampled so
    slices stack along their normal, and the in-plane content of slice k is shifted with respect
    to the stored image of `slice_refs[k]` (same plane, different grid origin).
    """

    voxels: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: np.ndarray
    slice_refs: tuple[SliceRef, ...]
    headers: tuple[Dataset, ...]
    modality: str
    units: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str | None
    tilt_deg: float = 0.0
    tilt_corrected: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.voxels.shape
        return int(s[0]), int(s[1]), int(s[2])

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix from (slice, row, column, 1) indices to LPS millimetres."""
        out = np.eye(4)
        out[:3, :3] = self.direction * np.asarray(self.spacing)[np.newaxis, :]
        out[:3, 3] = self.origin
        return out

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        """SOP Instance UID of each slice, in slice order (repeats for multi-frame sources)."""
        return tuple(ref.sop_instance_uid for ref in self.slice_refs)

    def header_for_slice(self, k: int) -> Dataset:
        """The header-only data set of the instance slice `k` came from."""
        return self.headers[self.slice_refs[k].header_index]

    def index_to_lps(self, index: np.ndarray) -> np.ndarray:
        """Maps (N, 3) (slice, row, column) indices to (N, 3) LPS positions in mm."""
        idx = np.atleast_2d(np.asarray(index, dtype=float))
        out: np.ndarray = idx @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out
