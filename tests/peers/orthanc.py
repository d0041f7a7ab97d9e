"""A real Orthanc PACS (Debian package) on free loopback ports, for tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass
class Orthanc:
    http_port: int
    dicom_port: int
    aet: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def upload(self, files: list[Path]) -> set[str]:
        """Stores files through the REST API; returns the Orthanc study ids."""
        studies = set()
        with self.client() as http:
            for f in files:
                r = http.post("/instances", content=f.read_bytes())
                r.raise_for_status()
                studies.add(r.json()["ParentStudy"])
        return studies

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_orthanc(workdir: Path, *, aet: str = "ORTHANC",
                  modalities: dict[str, list[object]] | None = None,
                  dicomweb: bool = False) -> Orthanc:
    """Starts Orthanc with its own storage under `workdir`; skips when it is not installed."""
    if not ORTHANC.exists():
        pytest.skip("Orthanc is not installed (Debian package orthanc): run scripts/setup.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "infernode-test",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": modalities or {},
        "DicomScuTimeout": 30,
        "StableAge": 1,
        "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb and DICOMWEB_PLUGIN.exists() else [],
        "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
    }
    cfg = workdir / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = workdir / "orthanc.log"
    proc = subprocess.Popen([str(ORTHANC), str(cfg)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    orthanc = Orthanc(http_port, dicom_port, aet, proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("Orthanc exited:\n" + log.read_text()[-3000:])
        try:
            if httpx.get(f"{orthanc.url}/system", timeout=2).status_code == 200:
                return orthanc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    orthanc.stop()
    raise RuntimeError("Orthanc did not start:\n" + log.read_text()[-3000:])


def cleanup(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
