"""A local Orthanc (Debian package `orthanc`) used by `infernode demo` as the PACS that results
are delivered to, so a new user can open them in a viewer. Loopback only, no authentication;
not for production."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")


@dataclass
class LocalPacs:
    """A running Orthanc: its ports, AE title and process."""

    http_port: int
    dicom_port: int
    aet: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def instance_count(self, study_instance_uid: str) -> int:
        """Instances Orthanc holds for a study (0 when it has none)."""
        with httpx.Client(base_url=self.url, timeout=10) as http:
            found = http.post("/tools/find", json={
                "Level": "Study", "Query": {"StudyInstanceUID": study_instance_uid}})
            found.raise_for_status()
            total = 0
            for study_id in found.json():
                stats = http.get(f"/studies/{study_id}/statistics").json()
                total += int(stats.get("CountInstances", 0))
        return total

    def stop(self) -> None:
        stop_orthanc(self.process)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_orthanc(folder: Path, config: dict[str, Any], *,
                   binary: Path = ORTHANC_BINARY, auth: tuple[str, str] | None = None,
                   ready_timeout_s: float = 30.0) -> subprocess.Popen[bytes]:
    """Writes `config` to `folder/orthanc.json`, starts Orthanc (log in `folder/orthanc.log`)
    and waits until its REST API on `config["HttpPort"]` answers.

    Raises RuntimeError when it exits or does not answer in time (it is stopped then).
    """
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = folder / "orthanc.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(binary), str(config_path)], stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config['HttpPort']}/system"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}: "
                               f"{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, auth=auth, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_orthanc(process)
    raise RuntimeError(f"Orthanc did not answer within {ready_timeout_s:g} s: "
                       f"{log_path.read_text()[-2000:]}")


def stop_orthanc(process: subprocess.Popen[bytes]) -> None:
    """Terminates Orthanc, killing it if it does not exit in 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def start_local_pacs(folder: Path, *, aet: str = "DEMOPACS",
                     ready_timeout_s: float = 30.0) -> LocalPacs | None:
    """Starts Orthanc with its storage under `folder`; None when Orthanc is not installed.

    Raises RuntimeError when it is installed but does not come up.
    """
    if not ORTHANC_BINARY.exists():
        return None
    http_port, dicom_port = _free_port(), _free_port()
    config = {
        "Name": "InferNodeDemoPACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": True,
        "SaveJobs": False,
    }
    process = launch_orthanc(folder, config, ready_timeout_s=ready_timeout_s)
    return LocalPacs(http_port, dicom_port, aet, process)
