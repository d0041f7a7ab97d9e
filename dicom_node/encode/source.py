"""Reading the source's Patient and Study attributes tolerantly, for the outputs to repeat.

Real exports leave Type 2 attributes out or empty (both legal for Type 2, PS3.5 7.4.3) and
sometimes carry values that break their VR (a Patient's Birth Date "1970-13-45", a Patient's Sex
"male"). highdicom reads ``src.PatientBirthDate`` and friends blindly and validates them, so one
such header would fail the whole job. `tolerant_source` gives the encoders a copy of the source
header in which:

- every Type 2 attribute of the Patient (PS3.3 C.7.1.1) and General Study (C.7.2.1) modules the
  outputs repeat is present (empty when the source has none);
- a value that is not valid for its VR (PS3.5 6.2) or enumerated values (Patient's Sex, C.7.1.1)
  is replaced by an empty value, with a warning naming the attribute keyword, never the value;
- text values (PN, LO, SH) are the source's own elements, so the outputs write the same bytes in
  the same Specific Character Set (PS3.5 6.1).

The source data set itself is never changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

REPEATED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
"""Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that
every output repeats from its source."""

_PATIENT_STUDY_NUMBERS = {
    "PatientAge", "PatientSize", "PatientWeight", "PatientBirthTime", "AdmittingDate",
}
"""Type 3 attributes of the Patient and Patient Study modules (C.7.1.1, C.7.2.2) that highdicom
copies into a SEG or SR along with the module (checked like the Type 2 ones)."""

_TM = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")
_AS = re.compile(r"^\d{3}[DWMY]$")
_DS = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_IS = re.compile(r"^[+-]?\d{1,12}$")
_SEXES = {"M", "F", "O"}


def _valid_da(value: str) -> bool:
    """DA: YYYYMMDD, a real calendar date (PS3.5 Table 6.2-1)."""
    if len(value) != 8 or not value.isdigit():
        return False
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return False
    return True


def _valid_ds(value: str) -> bool:
    return len(value) <= 16 and bool(_DS.match(value))


def _valid_is(value: str) -> bool:
    return bool(_IS.match(value)) and -(2**31) <= int(value) < 2**31


_CHECKS: dict[str, Callable[[str], bool]] = {
    "DA": _valid_da,
    "TM": lambda v: bool(_TM.match(v)),
    "AS": lambda v: bool(_AS.match(v)),
    "DS": _valid_ds,
    "IS": _valid_is,
}


def _text_of(element: DataElement | RawDataElement) -> str | None:
    """The element's value as one ASCII string, without converting a raw element (pydicom
    would log an invalid value in full); None when it is not plain ASCII or multi-valued."""
    value = element.value
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return None
        text = text.rstrip(" \x00").strip()
    elif value is None:
        return ""
    elif isinstance(value, str | int | float):
        text = str(value).strip()
    else:  # a MultiValue or other container: a VM 1 attribute with several values
        return None if len(value) != 1 else str(value[0]).strip()
    return None if "\\" in text else text


def _is_valid(keyword: str, vr: str, element: DataElement | RawDataElement) -> bool:
    if keyword != "PatientSex" and vr not in _CHECKS:
        return True  # text (PN, LO, SH): copied as the source has it
    text = _text_of(element)
    if text is None:
        return False
    if text == "":
        return True
    if keyword == "PatientSex":
        return text in _SEXES
    check = _CHECKS.get(vr)
    return check(text) if check is not None else True


def has_valid_value(ds: Dataset, keyword: str) -> bool:
    """True when `ds` has `keyword` with a non-empty value valid for its VR (checked without
    converting a raw element, so pydicom never logs the value)."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return False
    element = ds.get_item(tag)
    return _text_of(element) not in (None, "") and _is_valid(keyword, dictionary_VR(tag), element)


def _empty(keyword: str) -> DataElement:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return DataElement(tag, dictionary_VR(tag), None)


def _element_copy(source: Dataset) -> Dataset:
    """A data set holding the same element objects (raw ones stay raw) in a dictionary of its
    own, so that replacing an element in it leaves `source` alone (``Dataset.copy`` would
    share the dictionary)."""
    copy = Dataset()
    if "file_meta" in source.__dict__:
        copy.file_meta = source.file_meta
    for tag in source.keys():
        copy[tag] = source.get_item(tag)
    return copy


def tolerant_source(source: Dataset) -> Dataset:
    """A shallow copy of `source` whose repeated Patient and Study attributes are safe to read:
    Type 2 ones present (empty when absent), invalid values emptied with a warning that names
    the keyword only (no PHI). Other attributes are the source's own elements.
    """
    copy = _element_copy(source)
    for keyword in (*REPEATED_TYPE2, *sorted(_PATIENT_STUDY_NUMBERS)):
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        if tag not in copy:
            if keyword in REPEATED_TYPE2:
                copy[tag] = _empty(keyword)
            continue
        element = copy.get_item(tag)
        vr = dictionary_VR(tag)
        if not _is_valid(keyword, vr, element):
            log.warning(
                "source %s: %s value not valid for its VR %s; written empty",
                source.get("SOPInstanceUID", "?"), keyword, vr,
            )
            if keyword in REPEATED_TYPE2:
                copy[tag] = _empty(keyword)
            else:
                del copy[tag]
    return copy


def tolerant_first(datasets: Sequence[Dataset]) -> list[Dataset]:
    """`datasets` with the first one (whose Patient and Study attributes highdicom copies into
    a new object) replaced by its `tolerant_source` copy."""
    if not datasets:
        return []
    return [tolerant_source(datasets[0]), *datasets[1:]]



def character_set(source: Dataset) -> str | list[str] | None:
    """The source's Specific Character Set (0008,0005), which the outputs repeat, so texts the
    encoders add must be encodable in it (PS3.5 6.1)."""
    value = source.get("SpecificCharacterSet")
    if value is None or isinstance(value, str):
        return value
    return [str(v) for v in value]


def known_character_set(source: Dataset) -> bool:
    """True when `source` declares a Specific Character Set (0008,0005) whose every term
    pydicom can encode (PS3.3 C.12.1.1.2; an empty first value means ISO 2022 IR 6). The
    outputs then repeat the source's value as it is; else they use the default repertoire,
    with a warning.

    highdicom gets no character set at all (its own check refuses an empty first value, the
    usual Japanese form, and ISO 2022 IR 149): ``finish`` writes the source's value, and
    pydicom encodes only when the object is written.
    """
    value = character_set(source)
    if value is None:
        return False
    values = [value] if isinstance(value, str) else list(value)
    if all(v.strip() in python_encoding for v in values):
        return True
    log.warning("source %s: Specific Character Set not recognised; outputs use the default",
                source.get("SOPInstanceUID", "?"))
    return False
