"""The concepts `dicom_node.encode.codes` writes out under a PS3.16 keyword are exactly what
pydicom's SR code dictionary (generated from PS3.16) holds under that keyword: the table names
its source, and this keeps the written-out values true to it. Importing the table does not load
the dictionary (an acceptor process imports the table through the pipelines' definitions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from pydicom.sr.codedict import codes as dictionary

from dicom_node.encode import codes
from dicom_node.encode.codes import Coded, body_part_site

SOURCE = re.compile(r"^PS3\.16 via pydicom\.sr\.codedict \((\w+)\.(\w+)\)$")


def test_every_written_out_concept_is_the_dictionarys():
    checked = []
    for name, value in vars(codes).items():
        if not isinstance(value, Coded):
            continue
        match = SOURCE.match(value.source)
        if match is None:
            continue
        scheme, keyword = match.groups()
        entry = getattr(getattr(dictionary, scheme), keyword)
        assert (value.value, value.scheme, value.meaning) == (
            entry.value, entry.scheme_designator, entry.meaning), name
        checked.append(name)
    assert len(checked) >= 27 and {"FINDING", "VOLUME", "UNIT_NONE", "SKULL"} <= set(checked)


def test_anatomic_sites_come_from_the_dictionary_when_asked_for():
    wrist = body_part_site("wrist")
    entry = dictionary.SCT.WristJoint
    assert wrist is not None
    assert (wrist.value, wrist.scheme, wrist.meaning) == (
        entry.value, entry.scheme_designator, entry.meaning)
    assert body_part_site("NOT A PART") is None


def test_importing_the_table_does_not_load_the_dictionary():
    probe = ("import json, sys; import dicom_node.encode.codes; "
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pydicom.sr'))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    assert "pydicom.sr.codedict" not in json.loads(result.stdout)
