"""De-identified delivery: the node's real SEG, SR and KOS of a head CT whose header carries
canary PHI, sent through the outbox to a real Orthanc (C-STORE, and STOW-RS to its DICOMweb
plugin) by a destination with `deidentify`. What
arrives carries no canary, says it was de-identified (PS3.15 Basic Profile), is dciodvfy-clean,
and its mapped UIDs still tie SEG, SR, KOS and the (mapped) sources together."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from prometheus_client import CollectorRegistry
from pydicom.dataset import Dataset
from sqlalchemy import Engine

from dicom_node.deid import DeidOptions, deidentify, is_deidentified, uid_mapper
from dicom_node.encode import EncodeContext, Pipeline, encode_outputs
from dicom_node.encode.samples import ct_head_case, sample_algorithm
from dicom_node.encode.samples import fixed_clock as dicom_clock
from tests.integration.workers.outbox.outbox_support import MovableClock, running_job, succeed
from tests.support.peers.orthanc import requires_orthanc, running_orthanc
from workers.config import WorkersConfig
from workers.messages import OutputRef
from workers.outbox.config import DeliveryConfig
from workers.outbox.metrics import register_delivery_metrics
from workers.outbox.runner import DeliveryRunner

SECRET = "site-secret-for-the-deid-test"  # noqa: S105 - a test secret
CANARY = b"CANARY"


def _with_canaries(ds: Dataset) -> None:
    ds.PatientName = "CANARYNAME^Zed"
    ds.PatientID = "CANARYPID"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "CANARYACC"
    ds.ReferringPhysicianName = "CANARYREF^Doc"
    ds.InstitutionName = "CANARYINST"
    ds.StudyDescription = "CANARYDESC"
    ds.OperatorsName = "CANARYOP^Tech"
    ds.StudyID = "CANARYSID"
    ds.add_new(0x00091010, "LO", "CANARYPRIVATE")  # a private attribute


def _outputs(folder: Path) -> tuple[list[Dataset], list[Path], list[OutputRef]]:
    case = ct_head_case()
    for source in case.sources:
        _with_canaries(source)
    study_uid = str(case.sources[0].StudyInstanceUID)
    ctx = EncodeContext.for_job(study_uid, Pipeline.ICH, sample_algorithm("ICH"), dicom_clock())
    encoded = encode_outputs(case.sources, [*case.masks, *case.probabilities], ctx)
    folder.mkdir(parents=True, exist_ok=True)
    paths, refs = [], []
    for ds in encoded.datasets():
        path = folder / f"{ds.Modality.lower()}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert CANARY in path.read_bytes()  # the outputs carry the source's PHI
        paths.append(path)
        refs.append(OutputRef(kind="dicom", uid=str(ds.SOPInstanceUID), path=str(path)))
    return list(case.sources), paths, refs


def _uids(ds: Dataset, keyword: str) -> set[str]:
    """Every value of `keyword` at any nesting level."""
    found: set[str] = set()

    def visit(item: Dataset, elem: pydicom.DataElement) -> None:
        if elem.keyword == keyword and elem.value:
            found.add(str(elem.value))

    ds.walk(visit)
    return found


def _dciodvfy_errors(path: Path) -> list[str]:
    check = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True,
                           errors="replace", timeout=60, check=False)
    return [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")]


@requires_orthanc
@pytest.mark.parametrize("kind", ["dicom", "stow"])
def test_deidentified_results_arrive_without_phi_and_still_reference_each_other(
        engine: Engine, clock: MovableClock, tmp_path: Path, kind: str) -> None:
    sources, _paths, refs = _outputs(tmp_path / "out")
    mapped = uid_mapper(SECRET.encode())
    with running_orthanc(tmp_path / "orthanc") as pacs:
        target = ({"type": "dicom", "host": "127.0.0.1", "port": pacs.dicom_port,
                   "called_ae": pacs.aet} if kind == "dicom"
                  else {"type": "stow", "base_url": pacs.dicomweb_url})
        delivery = DeliveryConfig.model_validate({"destinations": [
            {**target, "name": "research", "deidentify": True, "deid_uid_secret": SECRET}]})
        cfg = WorkersConfig(delivery=delivery)
        job = running_job(engine, cfg, clock(), study_uid=str(sources[0].StudyInstanceUID))
        succeed(engine, job, clock(), tuple(refs))
        runner = DeliveryRunner(engine, cfg, clock=clock,
                                metrics=register_delivery_metrics(CollectorRegistry(), engine))
        report = runner.run_due_once()
        assert (report.claimed, report.delivered) == (3, 3), report
        assert all(pacs.find_instance(r.uid) is None for r in refs)  # never the original UIDs
        arrived: dict[str, Dataset] = {}
        for ref in refs:
            orthanc_id = pacs.find_instance(mapped(ref.uid))
            assert orthanc_id is not None
            data = pacs.instance_file(orthanc_id)
            assert CANARY not in data
            path = tmp_path / "arrived" / f"{ref.uid}.dcm"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            assert _dciodvfy_errors(path) == [], path
            ds = pydicom.dcmread(path)
            assert is_deidentified(ds)
            codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
            assert codes[0] == "113100" and "113110" not in codes
            assert not any(e.tag.is_private for e in ds.iterall())
            arrived[ds.Modality] = ds

    study = mapped(str(sources[0].StudyInstanceUID))
    assert {ds.StudyInstanceUID for ds in arrived.values()} == {study}
    assert all(ds.PatientID == "" and ds.PatientName == "" for ds in arrived.values())
    source_uids = {mapped(str(s.SOPInstanceUID)) for s in sources}
    seg, sr, kos = arrived["SEG"], arrived["SR"], arrived["KO"]
    # SEG: its per-frame and series-level source references are the mapped sources
    assert _uids(seg, "ReferencedSOPInstanceUID") <= source_uids
    assert _uids(seg, "ReferencedSOPInstanceUID")
    assert seg.FrameOfReferenceUID == mapped(str(sources[0].FrameOfReferenceUID))
    # SR and KOS reference the SEG and the sources under their mapped UIDs, nothing else
    for doc in (sr, kos):
        referenced = _uids(doc, "ReferencedSOPInstanceUID")
        assert referenced <= source_uids | {str(seg.SOPInstanceUID), str(sr.SOPInstanceUID)}
    assert str(seg.SOPInstanceUID) in _uids(sr, "ReferencedSOPInstanceUID")
    # the SR's tracking UIDs equal the SEG's (one mapping for both)
    assert _uids(sr, "UID") & _uids(seg, "TrackingUID")


def test_retained_uids_and_the_secret_rule(tmp_path: Path) -> None:
    _sources, paths, refs = _outputs(tmp_path / "out")
    seg = pydicom.dcmread(paths[0])
    kept = deidentify(seg, DeidOptions(retain_uids=True))
    assert kept.SOPInstanceUID == seg.SOPInstanceUID == refs[0].uid
    assert [c.CodeValue for c in kept.DeidentificationMethodCodeSequence] == [
        "113100", "113104", "113110"]
    kept.save_as(tmp_path / "kept.dcm", enforce_file_format=True)
    assert CANARY not in (tmp_path / "kept.dcm").read_bytes()
    assert CANARY in paths[0].read_bytes()  # the stored output is untouched
    with pytest.raises(ValueError, match="secret"):
        DeidOptions(uid_secret=b"short")
    with pytest.raises(ValueError, match="deid_uid_secret"):
        DeliveryConfig.model_validate({"destinations": [
            {"type": "dicom", "host": "127.0.0.1", "port": 104, "called_ae": "ARCHIVE",
             "deidentify": True}]})
