"""Real-world source headers built by the tests: the sample CT head series written to files,
read back (so values stay raw until read, as on the node), then with attributes removed,
emptied or given values that break their VR."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicom_node import synth
from dicom_node.encode import EncodeContext, Finding, Pipeline
from dicom_node.encode.samples import ct_head_case, fixed_clock, sample_algorithm

TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDate", "StudyTime",
)
"""Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1)."""

OTHER_ABSENT = ("SeriesNumber", "InstanceNumber", "StudyDescription", "SliceThickness")
"""Type 2 / Type 3 attributes of other modules that real exports also leave out."""


def raw(keyword: str, text: str | bytes) -> RawDataElement:
    """The element as a file read leaves it: bytes not yet converted (explicit VR LE)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None
    value = text if isinstance(text, bytes) else text.encode("latin-1")
    if len(value) % 2:
        value += b" "
    return RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


Mutation = Callable[[Dataset], None]


def absent(*keywords: str) -> Mutation:
    def apply(ds: Dataset) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)
    return apply


def empty(*keywords: str) -> Mutation:
    def apply(ds: Dataset) -> None:
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            assert tag is not None
            ds[tag] = raw(keyword, b"")
    return apply


def invalid(keyword: str, text: str) -> Mutation:
    def apply(ds: Dataset) -> None:
        ds[tag_for_keyword(keyword)] = raw(keyword, text)
    return apply


VARIANTS: dict[str, Mutation] = {
    **{f"absent-{k}": absent(k) for k in (*TYPE2, *OTHER_ABSENT)},
    **{f"empty-{k}": empty(k) for k in (*TYPE2, *OTHER_ABSENT)},
    "absent-all-type2": absent(*TYPE2, *OTHER_ABSENT),
    "empty-all-type2": empty(*TYPE2, *OTHER_ABSENT),
    "birthdate-month-13": invalid("PatientBirthDate", "1970-13-45"),
    "birthdate-unknown": invalid("PatientBirthDate", "UNKNOWN"),
    "birthdate-short": invalid("PatientBirthDate", "197001"),
    "birthdate-day-32": invalid("PatientBirthDate", "19700132"),
    "sex-x": invalid("PatientSex", "X"),
    "sex-male": invalid("PatientSex", "male"),
    "studydate-dotted": invalid("StudyDate", "2026.01.01"),
    "studytime-colons": invalid("StudyTime", "12:00:00"),
    "age-no-unit": invalid("PatientAge", "45"),
    "weight-word": invalid("PatientWeight", "heavy"),
    "slice-thickness-word": invalid("SliceThickness", "abc"),
}
"""Each variant is applied to every instance of the series."""

INVALID_VALUES = {
    "birthdate-month-13": ("PatientBirthDate", "1970-13-45"),
    "birthdate-unknown": ("PatientBirthDate", "UNKNOWN"),
    "birthdate-short": ("PatientBirthDate", "197001"),
    "birthdate-day-32": ("PatientBirthDate", "19700132"),
    "sex-x": ("PatientSex", "X"),
    "sex-male": ("PatientSex", "male"),
    "studydate-dotted": ("StudyDate", "2026.01.01"),
    "studytime-colons": ("StudyTime", "12:00:00"),
}
"""Variants whose value the outputs must write empty (Type 2: present, zero length)."""


@dataclass
class Source:
    """A header variant of the sample CT head: instances read from files, and findings."""

    sources: list[Dataset]
    findings: list[Finding]
    ctx: EncodeContext
    folder: Path


def ct_head_variant(folder: Path, mutation: Mutation | None = None,
                    character_set: object = None, texts: dict[str, str] | None = None) -> Source:
    """The sample CT head written under `folder`/src, read back and mutated.

    `character_set` and `texts` (keyword -> value) are set before writing, so the files carry
    those texts encoded in that Specific Character Set, as a scanner would send them.
    """
    case = ct_head_case()
    for ds in case.sources:
        if character_set is not None:
            ds.SpecificCharacterSet = character_set
        for keyword, value in (texts or {}).items():
            setattr(ds, keyword, value)
    paths = synth.write_series(case.sources, str(folder / "src"))
    sources = [dcmread(p) for p in paths]
    if mutation is not None:
        for ds in sources:
            mutation(ds)
    ctx = EncodeContext.for_job(str(sources[0].StudyInstanceUID), Pipeline.ICH,
                                sample_algorithm("InferNode ich", "1.2.0", b"ich"), fixed_clock())
    findings: list[Finding] = [*case.masks, *case.probabilities]
    # The findings name the key images by the original UIDs, which the files keep.
    return Source(sources, findings, ctx, folder)
