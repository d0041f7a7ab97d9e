"""Damaged data sets through the real SCP: each is refused with 0xC000 Cannot Understand or 0xA900
Data Set Does Not Match SOP Class (PS3.4 B.2.3) and an Error Comment, its bytes are kept under
the spool's rejected folder with a record, nothing is indexed, and one log line says why.

Where DCMTK's storescu can carry the damage (it re-encodes what it reads, and refuses to read
truncated or mis-encoded files) it is the sender; otherwise pynetdicom streams the file's data set
bytes unchanged (`STORE_SEND_CHUNKED_DATASET`), with the C-STORE command's UIDs taken from the File
Meta, as a scanner with a broken encoder would send them.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification

from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import CORPUS, Case, data_set_offset
from tests.support.peers.dcmtk import run

DCMTK_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")
DCMTK_COMMENT = re.compile(r"\(0000,0902\) LO \[([^\]]*)\]")


def send_raw(port: int, path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """pynetdicom as a raw sender: the data set bytes go out exactly as the file holds them."""
    from pydicom.filereader import read_dataset, read_preamble

    with path.open("rb") as f:
        read_preamble(f, False)
        meta = read_dataset(f, False, True, stop_when=lambda tag, *_: tag.group != 2)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    ae = AE(ae_title="INFERNODE_SCU")
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="INFERNODE")
    assert assoc.is_established
    try:
        response = assoc.send_c_store(path)
        # The association survives the refusal.
        assert assoc.send_c_echo().Status == Status.SUCCESS
    finally:
        assoc.release()
    return int(response.Status), str(response.get("ErrorComment", ""))


def send_dcmtk(port: int, path: Path) -> tuple[int, str]:
    result = run(["storescu", "-d", "-aet", "INFERNODE_SCU", "-aec", "INFERNODE",
                  "127.0.0.1", str(port), str(path)], timeout=60)
    output = result.stdout + result.stderr
    statuses = DCMTK_STATUS.findall(output)
    assert statuses, output[-2000:]
    comment = DCMTK_COMMENT.search(output)
    return int(statuses[-1], 16), comment.group(1).strip() if comment else ""


def _spool_files(node) -> list[Path]:
    spool = Path(node.settings.dicom.spool_dir)
    return [p for p in spool.rglob("*") if p.is_file() and ".rejected" not in p.parts
            and not (".slots" in p.parts and p.stat().st_size == 0)]  # the pool's empty slots


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_damaged_instance_is_refused_kept_and_never_indexed(
    case: Case, node_factory, tmp_path, caplog, monkeypatch
):
    node = node_factory()
    path = case.write(tmp_path)
    caplog.set_level(logging.INFO)
    if case.dcmtk:
        status, comment = send_dcmtk(node.server.port, path)
    else:
        status, comment = send_raw(node.server.port, path, monkeypatch)

    assert status == case.status
    assert comment and len(comment) <= 64  # Error Comment (0000,0902) is LO
    [listed] = node.index.failures()
    failure = listed.record
    assert (failure.status, failure.reason_code) == (case.status, case.reason_code)
    assert failure.reason.startswith(comment.rstrip())
    assert failure.calling_ae == "INFERNODE_SCU"
    kept = Path(failure.kept_path)
    assert kept.parent == Path(node.settings.dicom.spool_dir) / ".rejected"
    if not case.dcmtk:  # the raw sender's bytes are kept exactly
        sent = path.read_bytes()
        assert kept.read_bytes()[data_set_offset(kept.read_bytes()):] == \
            sent[data_set_offset(sent):]
    sidecar = json.loads(kept.with_suffix(".json").read_text())
    assert (sidecar["status"], sidecar["reason_code"]) == (int(case.status), case.reason_code)
    assert [r["path"] for r in node.spool.kept_records()] == [str(kept)]

    assert node.index.counts()["instances"] == 0
    assert _spool_files(node) == []
    refusals = [r for r in caplog.records if "instance refused" in r.getMessage()]
    assert len(refusals) == 1
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("dicom_node"))
