"""A real Orthanc PACS (with its DICOMweb plugin) for integration tests.

`running_orthanc(folder)` starts /usr/sbin/Orthanc on free loopback ports with a configuration
written under `folder`, waits until its REST API answers, and stops it afterwards. The returned
`OrthancServer` knows its DICOM port, AE title, REST and DICOMweb URLs, and has small helpers to
read back what it stored and to send from it to another DICOM node.

    with running_orthanc(tmp_path) as pacs:
        StorageSCU(StoreDestination("127.0.0.1", pacs.dicom_port, pacs.aet)).send(files)
        assert pacs.find_instance(sop_uid) is not None
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infernode.local_pacs import launch_orthanc, stop_orthanc
from tests.support.net import free_port

ORTHANC = os.environ.get("INFERNODE_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def orthanc_available() -> bool:
    return shutil.which(ORTHANC) is not None and Path(DICOMWEB_PLUGIN).exists()


requires_orthanc = pytest.mark.skipif(
    not orthanc_available(), reason="Orthanc or its DICOMweb plugin is not installed"
)


@dataclass
class OrthancServer:
    """A started Orthanc: ports, AE title, and REST helpers (loopback, no authentication
    unless `users` was given to `running_orthanc`)."""

    http_port: int
    dicom_port: int
    aet: str
    folder: Path
    auth: tuple[str, str] | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.rest_url}/dicom-web"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.rest_url, auth=self.auth, timeout=30.0)

    def get(self, path: str) -> Any:
        with self.client() as http:
            response = http.get(path)
            response.raise_for_status()
            return response.json()

    def instances(self) -> list[str]:
        """Orthanc identifiers of every stored instance."""
        return list(self.get("/instances"))

    def find_instance(self, sop_instance_uid: str) -> str | None:
        """Orthanc identifier of the instance with this SOP Instance UID, or None."""
        with self.client() as http:
            response = http.post("/tools/lookup", content=sop_instance_uid)
            response.raise_for_status()
            hits = [h for h in response.json() if h.get("Type") == "Instance"]
        return str(hits[0]["ID"]) if hits else None

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file, byte for byte."""
        with self.client() as http:
            response = http.get(f"/instances/{orthanc_id}/file")
            response.raise_for_status()
            return response.content

    def upload(self, files: list[Path]) -> set[str]:
        """Stores files through the REST API; returns the Orthanc ids of their studies."""
        studies = set()
        with self.client() as http:
            for f in files:
                response = http.post("/instances", content=f.read_bytes())
                response.raise_for_status()
                studies.add(response.json()["ParentStudy"])
        return studies

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Declares a DICOM peer Orthanc may send to (REST /modalities)."""
        with self.client() as http:
            response = http.put(
                f"/modalities/{name}", json={"AET": aet, "Host": host, "Port": port}
            )
            response.raise_for_status()

    def send_to_modality(self, name: str, resources: list[str]) -> Any:
        """C-STOREs Orthanc resources (patients/studies/series/instances) to a declared peer."""
        with self.client() as http:
            response = http.post(f"/modalities/{name}/store", json=resources, timeout=120.0)
            response.raise_for_status()
            return response.json()


@contextmanager
def running_orthanc(
    folder: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Mapping[str, tuple[str, str, int]] | None = None,
    users: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    ready_timeout_s: float = 30.0,
) -> Iterator[OrthancServer]:
    """Starts Orthanc with its DICOMweb plugin on free ports; stops it on exit.

    `modalities` maps a name to (AE title, host, port) of peers it may send to; `users` turns
    on HTTP basic authentication; `extra` is merged into the configuration as is.
    """
    folder.mkdir(parents=True, exist_ok=True)
    server = OrthancServer(free_port(), free_port(), aet, folder)
    config: dict[str, Any] = {
        "Name": "InferNodeTestPACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": server.http_port,
        "DicomPort": server.dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "DicomCheckCalledAet": False,
        "DicomModalities": {k: list(v) for k, v in (modalities or {}).items()},
        "DicomModalitiesInDatabase": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "StorageCompression": False,
        "SaveJobs": False,
        "StableAge": 1,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 4,
    }
    config.update(extra or {})
    if users:
        server.auth = next(iter(users.items()))
    process = launch_orthanc(folder, config, binary=Path(ORTHANC), auth=server.auth,
                             ready_timeout_s=ready_timeout_s)
    try:
        yield server
    finally:
        stop_orthanc(process)
