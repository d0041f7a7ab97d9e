"""No PHI in any log line, metric, error column or file name, whatever the input.

Canary strings go into every PHI field (Patient Name and ID, birth date, accession, referring
physician, institution, study description), some of them malformed (wrong VR lengths, control
characters, an invalid date, an unknown character set), through every path of a real node
process (`infernode serve` at DEBUG, protocol logging at DEBUG): C-STORE with DCMTK storescu, an
instance refused at ingest, a series whose pixels cannot be decoded (routed, "not analysed"),
STOW-RS (a stored and a refused part) and the FHIR facade's error answers. Then every log line,
`/metrics`, every error and reason column and every file name under the data folder is searched
for the canary.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pydicom
import sqlalchemy as sa
import yaml
from pydicom import config as pydicom_config
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series
from infernode.settings import load_settings
from tests.e2e.e2e_support import REPO
from tests.support.net import free_port
from tests.support.peers.dcmtk import echoscu, storescu
from tests.support.waiting import wait_until

CANARY = re.compile(r"canary", re.IGNORECASE)
FACADE_TOKEN = "phi-test-facade-token"  # noqa: S105 - a test token
STOW_TOKEN = "phi-test-stow-token"  # noqa: S105


def _phi(ds: pydicom.Dataset, variant: int) -> None:
    """Canary values in every PHI field; `variant` picks malformed forms."""
    ds.PatientName = f"CANARYNAME{variant}^Zed" + ("\x07" if variant == 1 else "")
    ds.PatientID = f"CANARYPID{variant}" + ("X" * 70 if variant == 1 else "")  # LO max 64
    ds.PatientBirthDate = "CANARYDOB" if variant == 1 else "19700101"
    ds.AccessionNumber = f"CANARYACC{variant}" + ("-MUCH-TOO-LONG" if variant == 1 else "")
    ds.ReferringPhysicianName = f"CANARYREF{variant}^Doc"
    ds.InstitutionName = f"CANARYINST{variant}\x01\x02"
    ds.StudyDescription = f"CANARYDESC{variant} CT HEAD"
    if variant == 1:
        ds.SpecificCharacterSet = "ISO_IR 999"  # not a defined term


def _series(folder: Path, slices: int, variant: int, *, study_uid: str | None = None,
            undecodable: bool = False) -> list[Path]:
    import numpy as np

    volume = np.random.default_rng(variant).integers(0, 100, (slices, 32, 32)).astype(np.int16)
    identity = StudyIdentity(**({"study_instance_uid": study_uid} if study_uid else {}))
    datasets = volume_series(volume, (5.0, 0.5, 0.5), identity=identity, spec=SeriesSpec())
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        _phi(ds, variant)
        if undecodable:
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = encapsulate([b"\xff\xd8" + b"CANARYPIXELS" * 8])
            ds["PixelData"].VR = "OB"
        path = folder / f"{n:03}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = "phi-test-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
                    + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _config(tmp: Path, dicom_port: int, web_port: int) -> Path:
    data = tmp / "node"
    settings = load_settings(None, **{
        "data_dir": str(data), "log_level": "DEBUG",
        "database": {"url": f"sqlite:///{data / 'infernode.db'}"},
        "dicom": {"port": dicom_port, "spool_dir": str(data / "spool"), "min_free_bytes": 0,
                  "quiet_period_s": 3.0, "assembly_poll_s": 0.2, "protocol_log_level": "DEBUG",
                  "peers": [{"ae_title": "PHITESTSCU", "hosts": ["127.0.0.1"]}]},
        "web": {"port": web_port, "fhir_tokens": [FACADE_TOKEN], "stow_tokens": [STOW_TOKEN]},
        "inference": {"model_paths": [str(REPO / "models")]},
    })
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    for rule in dumped["workers"]["rules"]:
        rule["quiet_period_s"] = 3.0
    path = tmp / "node.yaml"
    path.write_text(yaml.safe_dump(dumped))
    return path


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _findings(text: str, where: str) -> list[str]:
    return [f"{where}: {line.strip()[:200]}" for line in text.splitlines() if CANARY.search(line)]


def test_no_phi_in_logs_metrics_error_columns_or_file_names(tmp_path):
    dicom_port, web_port = free_port(), free_port()
    config = _config(tmp_path, dicom_port, web_port)
    src = tmp_path / "src"
    with _IgnoreWritingValidation():
        analysed_not = _series(src / "undecodable", 12, 1, undecodable=True)
        plain = _series(src / "plain", 2, 2)
        stowed = _series(src / "stow", 1, 3)
        refused = _series(src / "refused", 1, 4)
    # an instance the node must refuse: a Study Instance UID that is not a UID
    bad = pydicom.dcmread(refused[0])
    bad.StudyInstanceUID = "1.2.CANARYSTUDY"
    bad.save_as(refused[0], enforce_file_format=True)

    log_path = tmp_path / "node.log"
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.Popen([sys.executable, "-m", "infernode.cli", "serve", "-c", str(config)],
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=REPO)
    data = tmp_path / "node"
    try:
        wait_until(lambda: proc.poll() is not None
                   or echoscu(dicom_port, calling="PHITESTSCU").returncode == 0, 90,
                   "the node to answer C-ECHO")
        assert proc.poll() is None, log_path.read_text()
        base = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: _answers(f"{base}/fhir/metadata"), 60, "the web port to answer")
        for files in (analysed_not, plain, refused):
            # -xy: propose JPEG Baseline, so the undecodable series travels as it is
            sent = storescu(dicom_port, files, calling="PHITESTSCU",
                            extra=["-xy"] if files is analysed_not else None)
            assert files is refused or sent.returncode == 0, sent.stdout + sent.stderr
        damaged = stowed[0].read_bytes()
        body, content_type = _multipart([stowed[0].read_bytes(), damaged[: len(damaged) // 2]])
        stow = httpx.post(f"{base}/dicom-web/studies", content=body, timeout=30, headers={
            "Content-Type": content_type, "Authorization": f"Bearer {STOW_TOKEN}"})
        assert stow.status_code in (200, 202, 409), stow.text
        fhir = f"{base}/fhir"
        auth = {"Authorization": f"Bearer {FACADE_TOKEN}"}
        answers = [
            httpx.get(f"{fhir}/DiagnosticReport", params={"patient": "CANARYPID1"}),
            httpx.get(f"{fhir}/DiagnosticReport", params={"date": "CANARYDATE"}, headers=auth),
            httpx.get(f"{fhir}/DiagnosticReport", params={"canaryparam": "CANARYVAL"},
                      headers=auth),
            httpx.get(f"{fhir}/DiagnosticReport/CANARYID", headers=auth),
            httpx.get(f"{fhir}/CanaryResource", headers=auth),
        ]
        assert [a.status_code for a in answers] == [401, 400, 400, 404, 404]

        engine = sa.create_engine(f"sqlite:///{data / 'infernode.db'}")

        def settled() -> bool:
            with engine.connect() as conn:
                states = conn.execute(sa.text("SELECT state FROM jobs")).scalars().all()
                pending = conn.scalar(sa.text(
                    "SELECT count(*) FROM deliveries WHERE state = 'pending'"))
            return bool(states) and all(s in ("succeeded", "failed") for s in states) \
                and pending == 0

        wait_until(settled, 180, "the routed study's job and deliveries to end")
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    with engine.connect() as conn:
        outcomes = conn.execute(sa.text("SELECT outcome, outcome_reason FROM jobs")).all()
        failures = conn.execute(sa.text("SELECT count(*) FROM ingest_failures")).scalar()
        columns = {
            "jobs": ("last_error", "error_reason", "outcome_reason"),
            "job_attempts": ("error", "reason"),
            "deliveries": ("last_error", "last_reason"),
            "ingest_failures": ("reason", "reason_code", "kept_path"),
            "ingest_conflicts": ("differences", "kept_path"),
        }
        stored: list[str] = []
        for table, names in columns.items():
            for row in conn.execute(sa.text(f"SELECT {', '.join(names)} FROM {table}")):
                stored += _findings(" | ".join(str(v) for v in row), table)
    engine.dispose()
    # every path was exercised: the undecodable series was routed and reported not analysed,
    # and the refused instance and STOW part were recorded
    assert ("not_analysed",) == tuple({o for o, _ in outcomes}), outcomes
    assert failures >= 2
    log = log_path.read_text(errors="replace")
    assert "pydicom" in log and "(values withheld)" in log  # the malformed values were seen
    names = [f"file name: {p}" for p in data.rglob("*") if CANARY.search(p.name)]
    leaks = (_findings(log, "log") + _findings(metrics, "metrics") + stored + names)
    assert leaks == [], "\n".join(leaks[:40])


class _IgnoreWritingValidation:
    """pydicom's writing validation off while the malformed test files are written."""

    def __enter__(self) -> None:
        self._saved = pydicom_config.settings.writing_validation_mode
        pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE

    def __exit__(self, *exc: object) -> None:
        pydicom_config.settings.writing_validation_mode = self._saved
