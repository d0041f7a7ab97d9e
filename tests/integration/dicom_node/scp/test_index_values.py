"""Header values that do not fit the index, sent by DCMTK's storescu to the real SCP, on SQLite and
on PostgreSQL: each instance is acknowledged with 0x0000 and indexed with what fits (normalised,
clipped, NUL removed, NULL where unusable), both databases hold the same, the original stays in
the spool file, nothing is left unindexed, and no Patient ID or Accession Number reaches the log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
from sqlalchemy.exc import OperationalError

from dicom_node.status import Status
from tests.integration.dicom_node.damaged_corpus import ct_dataset, part10
from tests.integration.dicom_node.odd_headers import ODD_HEADERS, OddHeader, set_raw
from tests.support.peers.dcmtk import storescu

COLUMNS = {
    "studies": "study_instance_uid",
    "series": "study_instance_uid",
    "instances": "study_instance_uid",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def _indexed(node, case: OddHeader, study_uid: str) -> dict[str, object]:
    found = {}
    with node.engine.connect() as conn:
        for key in case.expected:
            table, column = key.split(".")
            found[key] = conn.exec_driver_sql(
                f"SELECT {column} FROM {table} WHERE {COLUMNS[table]} = '{study_uid}'"
            ).scalar_one()
    return found


def _spool_files(node) -> set[str]:
    spool = Path(node.settings.dicom.spool_dir)
    return {str(p) for p in spool.rglob("*.dcm") if ".rejected" not in p.parts}


def _indexed_paths(node) -> set[str]:
    with node.engine.connect() as conn:
        return {r[0] for r in conn.exec_driver_sql("SELECT path FROM instances")}


def _capture(caplog) -> None:
    """Everything the node logs, at every level; SQLAlchemy's statement echo (INFO on
    sqlalchemy.engine) prints parameters by design and stays an opt-in debugging switch."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="sqlalchemy.engine")


def _phi_in_log(caplog, secrets: list[str]) -> list[str]:
    text = "\n".join(r.getMessage() + str(r.args) + str(r.exc_text or "")
                     for r in caplog.records)
    return [s for s in secrets if s in text]


def test_odd_values_are_stored_as_far_as_they_fit(db_url, node_factory, tmp_path, caplog):
    _capture(caplog)
    node = node_factory(db_url)
    written = [(case, *case.write(tmp_path)) for case in ODD_HEADERS]
    result = storescu(node.server.port, [path for _, path, _ in written])
    assert result.returncode == 0, result.stderr
    assert node.index.failures() == []
    mismatches = {}
    for case, _path, study_uid in written:
        found = _indexed(node, case, study_uid)
        if found != dict(case.expected):
            mismatches[case.name] = found
    assert mismatches == {}
    # The spool keeps what was sent: the index is clipped, the file is not.
    [long_ids] = [uid for case, _, uid in written if case.name == "ids-too-long"]
    with node.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            f"SELECT path FROM instances WHERE study_instance_uid = '{long_ids}'").scalar_one()
    assert pydicom.dcmread(stored, stop_before_pixels=True).PatientID == "P" * 80
    assert _spool_files(node) == _indexed_paths(node)
    assert len(_indexed_paths(node)) == len(ODD_HEADERS)
    assert _phi_in_log(caplog, ["P" * 64, "A" * 64, "PAT123", "ACC9", "A1\\B2"]) == []


def _one_instance(tmp_path: Path, patient_id: bytes, accession: bytes) -> Path:
    ds = ct_dataset()
    set_raw(ds, "PatientID", patient_id)
    set_raw(ds, "AccessionNumber", accession)
    path = tmp_path / "one.dcm"
    path.write_bytes(part10(ds))
    return path


def test_an_index_write_failure_moves_the_file_to_rejected_and_logs_no_parameters(
    db_url, node_factory, tmp_path, caplog, monkeypatch
):
    """The database refuses the row after the file was renamed into place: the sender gets a
    failure, the file leaves the spool proper with a record, and the SQL parameters (which the
    database error's text holds) never reach the log."""
    node = node_factory(db_url)
    path = _one_instance(tmp_path, b"SECRET-PID-77", b"SECRET-ACC-88")

    def refuse(*_args, **_kwargs):
        raise OperationalError("INSERT INTO studies ...",
                               {"patient_id": "SECRET-PID-77", "accession": "SECRET-ACC-88"},
                               Exception("server closed the connection"))

    monkeypatch.setattr(node.index, "record_instance", refuse)
    _capture(caplog)
    result = storescu(node.server.port, [path], extra=["-d"])
    assert "0x0110" in result.stdout + result.stderr
    assert _spool_files(node) == set()
    [listed] = node.index.failures()
    assert (listed.record.status, listed.record.reason_code) == (
        Status.PROCESSING_FAILURE, "index_write_failed")
    kept = Path(listed.record.kept_path)
    assert kept.exists() and kept.parent.name == ".rejected"
    assert pydicom.dcmread(kept).PatientID == "SECRET-PID-77"
    assert _phi_in_log(caplog, ["SECRET-PID-77", "SECRET-ACC-88"]) == []


def test_postgresql_errors_on_unfitted_values_are_refusals_without_parameters_in_the_log(
    pg_url, node_factory, tmp_path, caplog, monkeypatch
):
    """Without fitting, PostgreSQL itself refuses an over-long Patient ID (the failure the index
    used to meet): the refusal is 0x0110 with a record, the file is moved out of the spool proper,
    and the value PostgreSQL puts in its error never reaches the log."""
    import dicom_node.index.store as store

    monkeypatch.setattr(store, "fit", lambda _table, values: dict(values))
    node = node_factory(pg_url)
    secret = b"SECRET" + b"9" * 70
    path = _one_instance(tmp_path, secret, b"SECRET-ACC")
    _capture(caplog)
    result = storescu(node.server.port, [path], extra=["-d"])
    assert "0x0110" in result.stdout + result.stderr
    [listed] = node.index.failures()
    assert listed.record.reason_code == "index_write_failed"
    assert _spool_files(node) == set() and node.index.counts()["instances"] == 0
    assert _phi_in_log(caplog, [secret.decode(), "SECRET-ACC"]) == []
