"""Siemens mosaics: a mosaic built from a known volume unpacks into that volume, in place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dicom_node.volume import MissingGeometryError, read_series
from dicom_node.volume import csa as csa_module
from dicom_node.volume.model import SeriesVolume
from tests.unit.dicom_node.volume.mosaic_builders import csa1, csa2, mosaic_image


def _volume(shape: tuple[int, int, int] = (7, 12, 10)) -> np.ndarray:
    rng = np.random.default_rng(5)
    out = rng.integers(0, 4000, size=shape).astype(np.uint16)
    out[:, 0, 0] = np.arange(shape[0]) * 100  # a wrong slice order changes the array
    return out


def _write(ds: object, tmp_path: Path, name: str = "mosaic.dcm") -> list[str]:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]
    return [str(path)]


def _expected_positions(origin: Sequence[float], step: float, normal: np.ndarray,
                        count: int) -> np.ndarray:
    return np.asarray(origin, float) + np.arange(count)[:, None] * step * normal


def _assert_slices_in_place(read: SeriesVolume, known: np.ndarray, positions: np.ndarray
                            ) -> None:
    """Every known slice t is a slice of `read` with identical voxels, lying at positions[t]."""
    assert read.shape == known.shape
    found = read.index_to_lps(np.column_stack([np.arange(read.shape[0]),
                                               np.zeros(read.shape[0]),
                                               np.zeros(read.shape[0])]))
    for t in range(known.shape[0]):
        distance = np.linalg.norm(found - positions[t], axis=1)
        k = int(np.argmin(distance))
        assert distance[k] < 1e-3, f"slice {t} not found at its position"
        np.testing.assert_array_equal(read.voxels[k], known[t].astype(np.float32))


@pytest.mark.parametrize("count_in", ["csa", "csa1", "private"])
def test_axial_mosaic_unpacks_into_the_known_volume(tmp_path: Path, count_in: str) -> None:
    known = _volume()
    origin = (-60.0, -80.5, 12.0)
    ds = mosaic_image(known, (4.0, 2.0, 2.5), origin=origin, count_in=count_in, b_value=1000)
    assert (ds.Rows, ds.Columns) == (36, 30)  # 3 x 3 tiles of 12 x 10
    volume = read_series(_write(ds, tmp_path))
    np.testing.assert_array_equal(volume.voxels, known.astype(np.float32))
    np.testing.assert_allclose(volume.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.spacing, (4.0, 2.0, 2.5), atol=1e-6)
    assert [r.tile for r in volume.slice_refs] == list(range(7))
    assert {r.sop_instance_uid for r in volume.slice_refs} == {ds.SOPInstanceUID}


def test_oblique_mosaic_with_reversed_slice_normal(tmp_path: Path) -> None:
    """Tiles stack along the CSA SliceNormalVector, here opposite to row x column, on an
    oblique plane: every slice lands where it was taken."""
    known = _volume((5, 8, 12))
    angle = np.radians(20)
    row = np.array([np.cos(angle), np.sin(angle), 0.0])
    col = np.array([0.0, np.cos(0.3), -np.sin(0.3)])
    col -= row * np.dot(row, col)
    col /= np.linalg.norm(col)
    normal = -np.cross(row, col)
    origin = (10.0, -20.0, 35.0)
    ds = mosaic_image(known, (3.0, 1.5, 1.25), origin=origin, row_direction=row,
                      column_direction=col, slice_normal=normal)
    volume = read_series(_write(ds, tmp_path))
    _assert_slices_in_place(volume, known, _expected_positions(origin, 3.0, normal, 5))
    # The reader stacks along row x column, so the stored tile order comes back reversed.
    assert [r.tile for r in volume.slice_refs] == [4, 3, 2, 1, 0]


def test_mosaic_with_the_image_type_but_no_count_is_refused(tmp_path: Path) -> None:
    ds = mosaic_image(_volume(), (4.0, 2.0, 2.5), origin=(0, 0, 0), count_in="private")
    del ds[ds.private_block(0x0019, "SIEMENS MR HEADER").get_tag(0x0A)]
    with pytest.raises(MissingGeometryError, match="number of images"):
        read_series(_write(ds, tmp_path))


def test_mosaic_whose_tiles_do_not_divide_the_image_is_refused(tmp_path: Path) -> None:
    ds = mosaic_image(_volume(), (4.0, 2.0, 2.5), origin=(0, 0, 0), count_in="private")
    block = ds.private_block(0x0019, "SIEMENS MR HEADER")
    ds[block.get_tag(0x0A)].value = 17  # 5 x 5 tiles cannot divide 36 x 30
    with pytest.raises(MissingGeometryError, match="do not divide"):
        read_series(_write(ds, tmp_path))


def test_csa_parser_reads_both_layouts_and_rejects_noise() -> None:
    tags = {"NumberOfImagesInMosaic": ["24"], "SliceNormalVector": ["0", "0.1", "-0.99"],
            "B_value": ["1000"]}
    for block in (csa2(tags), csa1(tags)):
        parsed = csa_module.parse(block)
        assert csa_module.number(parsed, "NumberOfImagesInMosaic") == 24
        assert csa_module.numbers(parsed, "SliceNormalVector") == (0.0, 0.1, -0.99)
    with pytest.raises(csa_module.CsaFormatError):
        csa_module.parse(b"SV10\x04\x03\x02\x01" + b"\xff" * 12)
    with pytest.raises(csa_module.CsaFormatError):
        csa_module.parse(csa2(tags)[:100])  # truncated inside a tag
