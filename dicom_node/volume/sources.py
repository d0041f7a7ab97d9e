"""Per-slice arrays of a volume laid back onto the stored frames it was read from.

A derived object (SEG, PS3.3 C.8.20) references its source images frame by frame, so a mask
computed on a volume must be put back where each slice came from: a series of single-frame
images gives one frame per slice; a multi-frame image read in part (the b=1000 frames of an
Enhanced MR diffusion image) gives its full frame count, the unread frames empty; a Siemens
mosaic gives its mosaic frame with each slice back in its tile (`volume.mosaic`).

When the unread frames of a multi-frame image share positions with the read ones (b=0 and
b=1000 interleaved), highdicom refuses that image as SEG source as it stands (duplicate plane
positions). `dicom_node.encode.seg` then builds the SEG from the plane positions of the frames
that carry voxels (highdicom's ``plane_positions``) and has each SEG frame reference its own
source frame by Referenced Frame Number: which is why the unread frames are left empty here.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.volume.errors import SeriesReadError
from dicom_node.volume.frames import frame_count
from dicom_node.volume.model import SeriesVolume


def on_source_frames(volume: SeriesVolume, array: np.ndarray
                     ) -> tuple[tuple[Dataset, ...], np.ndarray]:
    """The source data sets and `array` (slices, rows, columns, on `volume`'s grid) laid out
    as their frames: (sources, frames) with ``frames[f]`` belonging to frame f of the sources
    (``sources[f]`` for single-frame images; frame f+1 of ``sources[0]`` for one multi-frame
    image; mosaic f with its tiles for mosaics).

    Raises:
        SeriesReadError: the volume was resampled (tilt-corrected) or mixes several multi-frame
            images, so its slices cannot be laid on stored frames.
    """
    if array.shape != volume.shape:
        raise ValueError(f"array of shape {array.shape} on a volume of shape {volume.shape}")
    refs = volume.slice_refs
    if volume.tilt_corrected:
        raise SeriesReadError("a tilt-corrected volume does not lie on its stored frames")
    if all(r.frame_number is None and r.tile is None for r in refs):
        return tuple(volume.headers[r.header_index] for r in refs), array
    if any(r.tile is not None for r in refs):
        return _on_mosaics(volume, array)
    if len(volume.headers) != 1:
        raise SeriesReadError(
            f"slices from {len(volume.headers)} multi-frame images; one is supported")
    header = volume.headers[0]
    out = np.zeros((frame_count(header), *array.shape[1:]), dtype=array.dtype)
    for k, ref in enumerate(refs):
        out[(ref.frame_number or 1) - 1] = array[k]
    return (header,), out


def _on_mosaics(volume: SeriesVolume, array: np.ndarray
                ) -> tuple[tuple[Dataset, ...], np.ndarray]:
    rows, columns = array.shape[1:]
    first = volume.headers[0]
    out = np.zeros((len(volume.headers), int(first.Rows), int(first.Columns)), dtype=array.dtype)
    for k, ref in enumerate(volume.slice_refs):
        if ref.tile is None:
            raise SeriesReadError("mosaic and non-mosaic images in one volume")
        grid = int(first.Columns) // columns
        r, c = divmod(ref.tile, grid)
        out[ref.header_index, r * rows:(r + 1) * rows, c * columns:(c + 1) * columns] = array[k]
    return volume.headers, out
