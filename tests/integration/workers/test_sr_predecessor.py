"""An amendment's SR names the SR it supersedes (Predecessor Documents Sequence, PS3.3 C.17.2):
jobs routed, claimed and completed through the job layer on PostgreSQL, reports written by the
pipelines' Reporter, the earlier SR found through the outputs table. The amended SR is checked
by dciodvfy and PixelMed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import Engine

from dicom_node.encode import Pipeline
from dicom_node.encode.samples import Case, ct_head_case, sample_algorithm
from tests.e2e.e2e_support import dciodvfy_errors
from tests.integration.workers.outbox.outbox_support import running_job, succeed
from tests.support.peers import pixelmed
from tests.support.peers.pixelmed_allowlist import unexplained
from workers.config import WorkersConfig
from workers.messages import JobContext, OutputRef
from workers.pipelines.report import NodeFacts, Reporter, ReportSpec

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage


@pytest.fixture
def reporter(pg_engine: Engine, wk_pg_url: str, tmp_path: Path) -> Reporter:
    spec = ReportSpec(name="ich", kind=Pipeline.ICH, modality="CT",
                      target_label="intracranial haemorrhage")
    return Reporter(NodeFacts(wk_pg_url, tmp_path / "out"), spec,
                    lambda: sample_algorithm("ICH", "1.0.0", b"w"), engine=pg_engine)


def _path(output: OutputRef) -> Path:
    assert output.path is not None
    return Path(output.path)


def _dicom(outputs: Sequence[OutputRef]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(_path(o)) for o in outputs if o.kind == "dicom"]


def _sr(outputs: Sequence[OutputRef]) -> pydicom.Dataset:
    found = _dicom(outputs)
    [sr] = [ds for ds in found if ds.SOPClassUID == SR_CLASS]
    return sr


def _result(reporter: Reporter, context: JobContext, case: Case) -> tuple[OutputRef, ...]:
    return reporter.write(context, case.sources, [*case.masks, *case.probabilities], [],
                          "Intracranial haemorrhage. AI-generated, not verified.")


def _names(sr: pydicom.Dataset, earlier: pydicom.Dataset) -> None:
    """`sr` names `earlier`, and only it, as its predecessor."""
    [study] = sr.PredecessorDocumentsSequence
    assert study.StudyInstanceUID == earlier.StudyInstanceUID
    [series] = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == earlier.SeriesInstanceUID
    [instance] = series.ReferencedSOPSequence
    assert (instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID) == (
        earlier.SOPClassUID, earlier.SOPInstanceUID)


def test_an_amendment_sr_names_the_sr_it_supersedes(
        pg_engine: Engine, reporter: Reporter) -> None:
    cfg = WorkersConfig()
    case = ct_head_case()  # one study: every call makes new UIDs
    study_uid = str(case.sources[0].StudyInstanceUID)
    # amendment 0: the study analysed before its last series arrived ("not analysed")
    first_job = running_job(pg_engine, cfg, NOW, study_uid=study_uid)
    first = reporter.not_analysed(first_job, "no usable series", "no_usable_series",
                                  headers=case.sources).outputs
    succeed(pg_engine, first_job, NOW, first)
    first_sr = _sr(first)
    assert "PredecessorDocumentsSequence" not in first_sr

    # amendment 1: the result, naming the "not analysed" report
    second_job = running_job(pg_engine, cfg, NOW, study_uid=study_uid, amendment=1)
    second = _result(reporter, second_job, case)
    second_sr = _sr(second)
    assert second_sr.SOPInstanceUID != first_sr.SOPInstanceUID
    _names(second_sr, first_sr)
    # the SEG and KOS of the amendment carry no such reference
    others = _dicom(second)
    assert {ds.Modality for ds in others} >= {"SEG", "KO"}
    assert not [ds for ds in others if ds.SOPClassUID != SR_CLASS
                and "PredecessorDocumentsSequence" in ds]
    # a re-run of the amendment's own job writes the same SR (same predecessor)
    again = _sr(_result(reporter, second_job, case))
    assert (again.SOPInstanceUID, again.PredecessorDocumentsSequence) == (
        second_sr.SOPInstanceUID, second_sr.PredecessorDocumentsSequence)
    succeed(pg_engine, second_job, NOW, second)

    # amendment 2 names amendment 1's SR (the latest), not the first
    third_job = running_job(pg_engine, cfg, NOW, study_uid=study_uid, amendment=2)
    _names(_sr(_result(reporter, third_job, case)), second_sr)


def test_the_amended_sr_is_valid(pg_engine: Engine, reporter: Reporter) -> None:
    cfg = WorkersConfig()
    case = ct_head_case()  # one study: every call makes new UIDs
    study_uid = str(case.sources[0].StudyInstanceUID)
    first_job = running_job(pg_engine, cfg, NOW, study_uid=study_uid)
    succeed(pg_engine, first_job, NOW, _result(reporter, first_job, case))
    amended = running_job(pg_engine, cfg, NOW, study_uid=study_uid, amendment=1)
    [path] = [_path(o) for o in _result(reporter, amended, case)
              if o.kind == "dicom" and pydicom.dcmread(_path(o)).SOPClassUID == SR_CLASS]
    assert "PredecessorDocumentsSequence" in pydicom.dcmread(path)
    assert dciodvfy_errors(path) == []
    report = pixelmed.validate(pixelmed.SR_VALIDATOR, path)
    assert report.completed and unexplained(report) == [], report.errors


def test_no_predecessor_when_the_earlier_sr_file_is_gone(
        pg_engine: Engine, reporter: Reporter) -> None:
    """Retention removed the earlier outputs' files: the amendment's SR names none (it cannot
    tell the earlier SR's series) and is still written."""
    cfg = WorkersConfig()
    case = ct_head_case()  # one study: every call makes new UIDs
    study_uid = str(case.sources[0].StudyInstanceUID)
    first_job = running_job(pg_engine, cfg, NOW, study_uid=study_uid)
    first = _result(reporter, first_job, case)
    succeed(pg_engine, first_job, NOW, first)
    for output in first:
        _path(output).unlink()
    amended = running_job(pg_engine, cfg, NOW, study_uid=study_uid, amendment=1)
    assert "PredecessorDocumentsSequence" not in _sr(_result(reporter, amended, case))
