"""Body part and laterality of a radiograph from its header (dicom_node/radiograph.py rules)."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicom_node.radiograph import body_part_from_text, find_body_part, find_laterality


def _header(**attributes: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _region(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


@pytest.mark.parametrize("examined, term", [
    ("HAND", "HAND"), ("hand", "HAND"), ("WRIST", "WRIST"), ("FOREARM", "FOREARM"),
    ("ELBOW", "ELBOW"), ("HUMERUS", "HUMERUS"), ("ARM", "HUMERUS"), ("UPPER ARM", "HUMERUS"),
    ("SHOULDER", "SHOULDER"), ("FOOT", "FOOT"), ("ANKLE", "ANKLE"), ("LEG", "LEG"),
    ("TIBIA", "LEG"), ("FIBULA", "LEG"), ("LOWER LEG", "LEG"), ("LOWER_LEG", "LEG"),
    ("LOWERLEG", "LEG"), ("TIB/FIB", "LEG"), ("KNEE", "KNEE"), ("FEMUR", "FEMUR"),
    ("THIGH", "FEMUR"), ("HIP", "HIP"), ("PELVIS", "PELVIS"), ("CHEST", "CHEST"),
    ("THORAX", "CHEST"), ("SKULL", "SKULL"), ("SPINE", "SPINE"), ("CSPINE", "CSPINE"),
    ("C-SPINE", "CSPINE"), ("L SPINE", "LSPINE"), ("FINGER", "FINGER"), ("RADIUS", "FOREARM"),
    ("EXTREMITY", "EXTREMITY"), ("HAND LT", "HAND"),
])
def test_body_part_examined_variants(examined: str, term: str) -> None:
    assert find_body_part(_header(BodyPartExamined=examined)) == (term, "body part examined")


@pytest.mark.parametrize("examined", ["", "BRAIN", "XYZ", "FOREARMS2"])
def test_unknown_body_part_is_none(examined: str) -> None:
    assert find_body_part(_header(BodyPartExamined=examined)) == (None, None)


@pytest.mark.parametrize("item, term", [
    (("74670003", "SCT", "Wrist joint"), "WRIST"),
    (("8205005", "SCT", "Wrist"), "WRIST"),
    (("30021000", "SCT", "Lower leg"), "LEG"),
    (("T-D3000", "SRT", "Chest"), "CHEST"),  # older SNOMED RT code: its meaning decides
    (("999999", "SCT", "Thigh"), "FEMUR"),
    (("123", "99LOCAL", "Somewhere"), None),
])
def test_anatomic_region_sequence(item: tuple[str, str, str], term: str | None) -> None:
    ds = _header(BodyPartExamined="", AnatomicRegionSequence=[_region(*item)])
    expected = (term, "anatomic region sequence") if term else (None, None)
    assert find_body_part(ds) == expected


def test_body_part_examined_wins_over_region_and_descriptions() -> None:
    ds = _header(BodyPartExamined="KNEE", SeriesDescription="ANKLE AP",
                 AnatomicRegionSequence=[_region("85562004", "SCT", "Hand")])
    assert find_body_part(ds) == ("KNEE", "body part examined")


@pytest.mark.parametrize("keyword, text, term", [
    ("SeriesDescription", "XR WRIST LEFT 2V", "WRIST"),
    ("SeriesDescription", "Left forearm AP", "FOREARM"),  # FOREARM, not ARM
    ("StudyDescription", "Non-ossifying fibroma of distal tibia", "LEG"),
    ("ProtocolName", "NECK OF FEMUR", "FEMUR"),  # NECK is not taken from free text
    ("StudyDescription", "XR C Spine Comp Min 4 Views", "CSPINE"),
    ("RequestedProcedureDescription", "X-ray hand and wrist", "HAND"),  # first named wins
    ("SeriesDescription", "Thorax LAT", "CHEST"),
    ("SeriesDescription", "Medium Soft Tissue 20-55 lb", None),
    ("SeriesDescription", "harmless", None),  # ARM inside a word is not ARM
])
def test_descriptions_by_whole_words(keyword: str, text: str, term: str | None) -> None:
    found = find_body_part(_header(**{keyword: text}))
    assert found[0] == term


def test_series_description_is_read_before_study_description() -> None:
    ds = _header(StudyDescription="XR ANKLE", SeriesDescription="Knee lateral")
    assert find_body_part(ds) == ("KNEE", "series description")


def test_requested_procedure_in_request_attributes() -> None:
    request = Dataset()
    request.RequestedProcedureDescription = "XR ELBOW 2 VIEWS"
    ds = _header(RequestAttributesSequence=[request])
    assert find_body_part(ds) == ("ELBOW", "requested procedure description")


def test_vague_extremity_is_refined_by_a_later_source() -> None:
    ds = _header(BodyPartExamined="EXTREMITY", StudyDescription="Distal tibia lesion")
    assert find_body_part(ds) == ("LEG", "study description")
    assert find_body_part(_header(BodyPartExamined="EXTREMITY")) == (
        "EXTREMITY", "body part examined")


def test_body_part_from_text_needs_whole_words() -> None:
    assert body_part_from_text("CHESTNUT", whole=False) is None
    assert body_part_from_text("post-op knee", whole=False) == "KNEE"
    assert body_part_from_text(None, whole=True) is None


@pytest.mark.parametrize("attributes, side, source", [
    ({"ImageLaterality": "L"}, "left", "image laterality"),
    ({"ImageLaterality": "R", "Laterality": "L"}, "right", "image laterality"),
    ({"ImageLaterality": "U", "SeriesDescription": "Left wrist"}, None, "image laterality"),
    ({"ImageLaterality": "B"}, None, "image laterality"),
    ({"Laterality": "R"}, "right", "laterality"),
    ({"Laterality": "", "SeriesDescription": "WRIST LT PA"}, "left", "series description"),
    ({"StudyDescription": "XR RIGHT KNEE"}, "right", "study description"),
    ({"SeriesDescription": "Hands left and right"}, None, None),
    ({"SeriesDescription": "Bright light"}, None, None),  # RIGHT inside a word is not a side
    ({}, None, None),
])
def test_laterality(attributes: dict[str, str], side: str | None, source: str | None) -> None:
    notes: list[str] = []
    assert find_laterality(_header(**attributes), notes) == (side, source)
