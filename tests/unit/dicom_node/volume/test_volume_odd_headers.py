"""Odd but real headers never crash the reader: it reads the series, or refuses it with a
typed, permanent SeriesReadError whose message carries no patient data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.errors import PermanentError
from dicom_node.volume import MissingGeometryError, SeriesReadError, read_series
from tests.unit.dicom_node.volume.volume_builders import ODD_HEADERS, odd_series

READABLE = {
    "no-series-description", "no-image-type", "no-modality", "slice-thickness-empty",
    "slice-thickness-word", "instance-number-word", "series-number-word",
    "rescale-slope-word", "spacing-between-slices-word",
}
REFUSED = {
    "pixel-spacing-one-value": MissingGeometryError,
    "pixel-spacing-words": MissingGeometryError,
    "no-image-position": MissingGeometryError,
    "image-position-words": MissingGeometryError,
    "orientation-five-values": MissingGeometryError,
    "orientation-words": MissingGeometryError,
    "frames-word": MissingGeometryError,
    "no-rows": MissingGeometryError,
    "no-sop-instance-uid": SeriesReadError,
}


def test_every_odd_header_has_an_expected_outcome() -> None:
    assert READABLE | set(REFUSED) == set(ODD_HEADERS)


@pytest.mark.parametrize("name", sorted(READABLE))
def test_tolerated_headers_give_a_volume(name: str, tmp_path: Path) -> None:
    volume = read_series(odd_series(tmp_path, name))
    assert volume.voxels.shape == (12, 16, 16)
    assert volume.spacing[0] == pytest.approx(5.0)  # from positions, not Slice Thickness


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unusable_headers_are_refused_with_a_reason(name: str, tmp_path: Path) -> None:
    with pytest.raises(REFUSED[name]) as caught:
        read_series(odd_series(tmp_path, name))
    assert isinstance(caught.value, PermanentError)
    assert caught.value.reason and caught.value.message
    assert "PHANTOM" not in caught.value.message and "Phantom" not in caught.value.message
