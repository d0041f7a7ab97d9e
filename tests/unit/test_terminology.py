"""One terminology: structural concepts as PS3.16 (pydicom's SR code dictionary) names them,
finding codes from the model cards as the vetted table (inference/codes.py) has them, and the
FHIR/HL7 side saying the same as the DICOM side, so SR, SEG, FHIR and HL7 code alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydicom.sr._concepts_dict import concepts

from dicom_node.encode import codes as dicom_codes
from dicom_node.encode import samples as dicom_samples
from hl7_fhir import codes as fhir_codes
from inference.codes import CODE_TABLE

REPO = Path(__file__).resolve().parents[2]

#: Concepts whose meaning deliberately differs from pydicom's dictionary, with the reason.
RENAMED = {
    "HEMORRHAGE_MORPHOLOGY": "STANDARDS.md names SCT 50960005 'Hemorrhage' (SEG property "
                             "type); the dictionary's keyword is 'Bleeding'",
    "INTRACRANIAL_HEMORRHAGE": "the ICH target is the model card's 'any' finding: its "
                               "meaning is the vetted table's",
}


def _dictionary() -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for scheme, by_keyword in concepts.items():
        for entries in by_keyword.values():
            for value, (meaning, _cids) in entries.items():
                found.setdefault((scheme, value), set()).add(meaning)
    return found


def _coded(module: object) -> dict[str, dicom_codes.Coded]:
    return {name: value for name, value in vars(module).items()
            if isinstance(value, dicom_codes.Coded)}


def test_structural_concepts_are_the_standards_own() -> None:
    dictionary = _dictionary()
    checked = 0
    for name, code in _coded(dicom_codes).items():
        meanings = dictionary.get((code.scheme, code.value))
        if meanings is None or name in RENAMED:
            continue
        checked += 1
        assert code.meaning in meanings, (name, code.meaning, meanings)
    assert checked >= 25  # the dictionary was read and most concepts come from it


def _card_labels() -> list[tuple[str, dict[str, str]]]:
    labels = []
    for card in sorted(REPO.glob("models/*/model.yaml")):
        data = yaml.safe_load(card.read_text(encoding="utf-8"))
        labels += [(f"{card.parent.name}:{label['key']}", label["code"])
                   for label in data.get("labels", [])]
    return labels


@pytest.mark.parametrize(("label", "code"), _card_labels())
def test_every_card_finding_code_is_in_the_vetted_table(label: str, code: dict[str, str]
                                                        ) -> None:
    table = {(e.code.scheme, e.code.value): e for e in CODE_TABLE.values()}
    entry = table.get((code.get("scheme", "SCT"), str(code["value"])))
    assert entry is not None, f"{label}: {code} is not in inference/codes.py"
    assert entry.code.meaning == code["meaning"], label
    assert entry.source, label


def test_sample_findings_use_the_vetted_codes() -> None:
    table = {(e.code.scheme, e.code.value): e.code.meaning for e in CODE_TABLE.values()}
    for name, code in _coded(dicom_samples).items():
        assert table.get((code.scheme, code.value)) == code.meaning, name


@pytest.mark.parametrize(("fhir", "dicom"), [
    (fhir_codes.PRESENT, dicom_codes.PRESENT), (fhir_codes.ABSENT, dicom_codes.ABSENT),
    (fhir_codes.VOLUME, dicom_codes.VOLUME), (fhir_codes.PROBABILITY, dicom_codes.PROBABILITY),
    (fhir_codes.NUMBER_OF_LESIONS, dicom_codes.NUMBER_OF_LESIONS),
])
def test_fhir_and_hl7_say_what_the_sr_says(fhir: tuple[str, str],
                                           dicom: dicom_codes.Coded) -> None:
    assert fhir == (dicom.value, dicom.meaning)
