"""Test helpers: write generated series to disk, optionally converted by DCMTK."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series


def ct_volume(shape: tuple[int, int, int] = (12, 40, 32), seed: int = 0) -> np.ndarray:
    """HU values with structure, so that a wrong slice order or flip changes the array."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    base[:, 0, 0] = np.arange(shape[0], dtype=np.int16) * 10
    return base


def build(
    volume: np.ndarray, spacing: Sequence[float], *, modality: str = "CT", **geometry: object
) -> list[Dataset]:
    return volume_series(
        volume, spacing, identity=StudyIdentity(), spec=SeriesSpec(modality=modality),
        **geometry,  # type: ignore[arg-type]
    )


def write(datasets: Sequence[Dataset], folder: Path) -> list[str]:
    return write_series(datasets, str(folder))


def convert(paths: Sequence[str], tool: Sequence[str], folder: Path) -> list[str]:
    """Runs a DCMTK converter (e.g. ["dcmcjpls"]) on every file into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = folder / Path(path).name
        subprocess.run([*tool, path, str(target)], check=True, capture_output=True, timeout=60)
        out.append(str(target))
    return out


# --- odd but real headers ----------------------------------------------------------------------


def raw_element(keyword: str, text: str) -> RawDataElement:
    """The element as a file read leaves it (explicit VR little endian, not yet converted)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None
    value = text.encode("latin-1")
    value += b" " * (len(value) % 2)
    return RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _set_raw(keyword: str, text: str) -> Callable[[Dataset], None]:
    def apply(ds: Dataset) -> None:
        ds[tag_for_keyword(keyword)] = raw_element(keyword, text)
    return apply


def _delete(keyword: str) -> Callable[[Dataset], None]:
    def apply(ds: Dataset) -> None:
        if keyword in ds:
            delattr(ds, keyword)
    return apply


ODD_HEADERS: dict[str, Callable[[Dataset], None]] = {
    "no-series-description": _delete("SeriesDescription"),
    "no-image-type": _delete("ImageType"),
    "no-modality": _delete("Modality"),
    "slice-thickness-empty": _set_raw("SliceThickness", ""),
    "slice-thickness-word": _set_raw("SliceThickness", "abc"),
    "pixel-spacing-one-value": _set_raw("PixelSpacing", "0.5"),
    "pixel-spacing-words": _set_raw("PixelSpacing", "a\\b"),
    "instance-number-word": _set_raw("InstanceNumber", "abc"),
    "series-number-word": _set_raw("SeriesNumber", "abc"),
    "no-image-position": _delete("ImagePositionPatient"),
    "image-position-words": _set_raw("ImagePositionPatient", "x\\y\\z"),
    "orientation-five-values": _set_raw("ImageOrientationPatient", "1\\0\\0\\0\\1"),
    "orientation-words": _set_raw("ImageOrientationPatient", "a\\b\\c\\d\\e\\f"),
    "frames-word": _set_raw("NumberOfFrames", "abc"),
    "no-sop-instance-uid": _delete("SOPInstanceUID"),
    "no-rows": _delete("Rows"),
    "rescale-slope-word": _set_raw("RescaleSlope", "abc"),
    "spacing-between-slices-word": _set_raw("SpacingBetweenSlices", "abc"),
}
"""Absent, empty or malformed Type 1/2/3 attributes, applied to every instance."""


def odd_series(folder: Path, name: str) -> list[str]:
    """A 12-slice CT head written under `folder`, read back, given the odd header `name`
    and written again (raw elements are written as they are)."""
    datasets = build(ct_volume((12, 16, 16)), (5.0, 0.5, 0.5))
    paths = write(datasets, folder / "clean")
    out = []
    (folder / name).mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths):
        ds = dcmread(path)
        ODD_HEADERS[name](ds)
        target = folder / name / f"{index:03d}.dcm"
        ds.save_as(target, enforce_file_format=False)
        out.append(str(target))
    return out
