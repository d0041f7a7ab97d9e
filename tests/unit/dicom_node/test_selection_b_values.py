"""Diffusion b-values where each vendor keeps them (dicom_node.selection)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicom_node.selection import _b_value


def _mr() -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    return ds


def _siemens(ds: Dataset) -> None:
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", "1000")


def _ge(ds: Dataset) -> None:
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(
        0x39, "IS", ["1000000800", "8", "0", "0"])


def _philips(ds: Dataset) -> None:
    ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", 1000.0)


def _standard(ds: Dataset) -> None:
    ds.DiffusionBValue = 1000


def _enhanced(ds: Dataset) -> None:
    diffusion = Dataset()
    diffusion.DiffusionBValue = 1000
    group = Dataset()
    group.MRDiffusionSequence = [diffusion]
    ds.SharedFunctionalGroupsSequence = [group]


def _sequence_name(ds: Dataset) -> None:
    ds.SequenceName = "*ep_b1000t"


@pytest.mark.parametrize(("place", "expected"), [
    (_siemens, 1000.0), (_ge, 800.0), (_philips, 1000.0), (_standard, 1000.0),
    (_enhanced, 1000.0), (_sequence_name, 1000.0),
])
def test_each_vendor_place_is_read(place, expected: float) -> None:
    ds = _mr()
    place(ds)
    assert _b_value(ds) == expected


def test_another_vendors_element_at_the_same_tag_is_not_read() -> None:
    ds = _mr()
    # (0043,1039) under another private creator is not GE's b-value
    ds.private_block(0x0043, "OTHER VENDOR", create=True).add_new(0x39, "IS", "1000")
    assert _b_value(ds) is None


def test_garbage_is_no_b_value() -> None:
    ds = _mr()
    ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "LO", "n/a")
    assert _b_value(ds) is None
