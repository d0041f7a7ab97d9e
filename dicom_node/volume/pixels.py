"""Pixel decoding: stored values of every frame, whatever the transfer syntax.

pydicom decodes native and deflated data itself and compressed data (JPEG baseline/extended and
lossless, JPEG-LS, JPEG 2000, RLE; PS3.5 A.4) through the installed pylibjpeg plugins. Only
single-sample greyscale images are volumes (PS3.3 C.7.6.3.1.2); anything else is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_node.volume.errors import UnsupportedPixelDataError

_GREYSCALE = {"MONOCHROME1", "MONOCHROME2"}


def check_greyscale(ds: Dataset) -> None:
    """Raises UnsupportedPixelDataError unless the image is one-sample MONOCHROME1/2."""
    try:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        samples = 0  # not a number: reported below like any unsupported layout
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if samples != 1 or photometric not in _GREYSCALE:
        raise UnsupportedPixelDataError(
            f"instance {ds.get('SOPInstanceUID', '?')}: {samples} sample(s), "
            f"photometric {photometric or 'absent'}; only greyscale images form a volume"
        )


def read_frames(path: str | Path, expected_frames: int) -> np.ndarray:
    """Stored values of all frames of one file as (frames, rows, columns).

    Raises:
        UnsupportedPixelDataError: no Pixel Data, an unknown transfer syntax, a decoder error,
            or a frame count other than `expected_frames`.
    """
    try:
        ds = dcmread(path)
    except (ValueError, OSError) as exc:
        raise UnsupportedPixelDataError(f"file not readable ({type(exc).__name__})") from exc
    check_greyscale(ds)
    if "PixelData" not in ds:
        raise UnsupportedPixelDataError(f"instance {ds.SOPInstanceUID} has no Pixel Data")
    try:
        # pydicom raises plain exceptions from many decoders; every one means the same thing
        # here: these stored bytes cannot become pixels.
        array = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, KeyError, OSError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise UnsupportedPixelDataError(
            f"instance {ds.SOPInstanceUID}: pixel data cannot be decoded "
            f"({type(exc).__name__}, transfer syntax {syntax})"
        ) from exc
    frames = array.reshape((-1, *array.shape[-2:])) if array.ndim == 3 else array[np.newaxis]
    if frames.shape[0] != expected_frames:
        raise UnsupportedPixelDataError(
            f"instance {ds.SOPInstanceUID}: {frames.shape[0]} frames decoded, "
            f"{expected_frames} described"
        )
    return frames


def decode_frame(path: str | Path, ds: Dataset, index: int = 0) -> np.ndarray:
    """Stored values of one frame (rows, columns) of the file at `path`, whose header is `ds`.

    Only that frame is decoded, and the file's Pixel Data is read from disk here rather than
    held in `ds` as well: a 4k x 4k image then costs its decoded frame and nothing more.
    A deflated file (PS3.5 A.5) must be inflated whole first, so it is decoded from `ds`.

    Raises:
        UnsupportedPixelDataError: no Pixel Data, no such frame, an unknown transfer syntax or
            a decoder error.
    """
    if "PixelData" not in ds:
        raise UnsupportedPixelDataError(
            f"instance {ds.get('SOPInstanceUID', '?')} has no Pixel Data")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "unknown")) if meta is not None else "unknown"
    source: str | Path | Dataset = ds if syntax == DeflatedExplicitVRLittleEndian else path
    try:
        # The decoders raise many plain exception types; each means these stored bytes cannot
        # become pixels.
        frame = pixel_array(source, index=index)
    except (ValueError, RuntimeError, NotImplementedError, KeyError, OSError, TypeError,
            AttributeError, IndexError) as exc:
        raise UnsupportedPixelDataError(
            f"instance {ds.get('SOPInstanceUID', '?')}: frame {index + 1} cannot be decoded "
            f"({type(exc).__name__}, transfer syntax {syntax})"
        ) from exc
    if frame.ndim != 2:
        raise UnsupportedPixelDataError(
            f"instance {ds.get('SOPInstanceUID', '?')}: decoded frame has shape {frame.shape}, "
            "not (rows, columns)"
        )
    return frame
