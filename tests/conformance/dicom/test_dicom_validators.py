"""Independent validators (dicom3tools) over every SEG, SR and KOS the encoders write."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

SCENARIOS = (
    "ct_ich", "mr_stroke", "dx_fracture", "dx_mask", "ct_negative", "dx_negative",
    "ct_not_analysed",
)
IODS = ("Segmentation", "Comprehensive3DSR", "KeyObjectSelectionDocument")


@pytest.mark.parametrize("name", SCENARIOS)
def test_dciodvfy_reports_no_error(scenarios, validators, name: str) -> None:
    scenario = scenarios[name]
    assert scenario.path("sr").exists(), "every scenario writes an SR"
    for path in scenario.output_paths:
        report = validators.run("dciodvfy", "-new", path)
        # dciodvfy names the IOD it checked first: an unrecognised IOD would be no check at all.
        assert any(iod in report for iod in IODS), report
        assert validators.errors(report) == [], f"{path.name}:\n{report}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_dcentvfy_source_and_outputs_are_consistent(scenarios, validators, name: str) -> None:
    scenario = scenarios[name]
    report = validators.run("dcentvfy", *scenario.source_paths, *scenario.output_paths)
    assert validators.errors(report) == [], report


def test_the_gate_can_fail(scenarios, validators, tmp_path: Path) -> None:
    """A SEG without its Segment Sequence and an SR of another patient are errors to the
    same tools, so the tests above would notice such mistakes."""
    scenario = scenarios["ct_ich"]
    seg = dcmread(scenario.path("seg"))
    del seg.SegmentSequence
    seg.save_as(tmp_path / "broken_seg.dcm")
    assert validators.errors(validators.run("dciodvfy", "-new", tmp_path / "broken_seg.dcm"))

    sr = dcmread(scenario.path("sr"))
    sr.PatientID = "SOMEONE-ELSE"
    sr.save_as(tmp_path / "other_patient_sr.dcm")
    report = validators.run("dcentvfy", *scenario.source_paths, tmp_path / "other_patient_sr.dcm")
    assert validators.errors(report), report
