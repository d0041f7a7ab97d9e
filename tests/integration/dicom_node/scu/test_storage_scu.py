"""Storage SCU against real peers: DCMTK storescp, Orthanc, and a pynetdicom SCP that answers
with chosen failure statuses."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage

from dicom_node.scu.errors import DeliveryPermanentError, DeliveryTransientError, StoreStatus
from dicom_node.scu.storage import StorageSCU, StoreDestination
from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from tests.support.peers.orthanc import requires_orthanc, running_orthanc

STORESCP = "/usr/bin/storescp"
needs_dcmtk = pytest.mark.skipif(not Path(STORESCP).exists() or shutil.which("dcmcjpls") is None,
                                 reason="DCMTK not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _series(folder: Path, slices: int = 5) -> list[Path]:
    volume = np.random.default_rng(1).integers(-1000, 1000, (slices, 32, 32)).astype(np.int16)
    datasets = volume_series(volume, (2.0, 0.5, 0.5), identity=StudyIdentity(), spec=SeriesSpec())
    return [Path(p) for p in write_series(datasets, str(folder))]


def _wait_port(port: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _poll(check, deadline_s: float = 10.0):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    return check()


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[object]:
    """Starts DCMTK storescp; the fixture returns a function (extra args) -> (port, dir, log)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> tuple[int, Path, Path]:
        port = _free_port()
        out = tmp_path / f"received{len(processes)}"
        out.mkdir()
        log = tmp_path / f"storescp{len(processes)}.log"
        with log.open("wb") as handle:
            processes.append(subprocess.Popen(
                [STORESCP, "-v", "-aet", "PACS", "-od", str(out), *extra, str(port)],
                stdout=handle, stderr=handle,
            ))
        _wait_port(port)
        return port, out, log

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@needs_dcmtk
def test_batch_goes_over_one_association_with_nodelay(storescp, tmp_path: Path) -> None:
    port, received, log = storescp()
    files = _series(tmp_path / "series")
    report = StorageSCU(StoreDestination("127.0.0.1", port, "PACS")).send(files)
    assert report.tcp_nodelay
    sent = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert {s.sop_instance_uid for s in report.stored} == sent
    assert all(s.status == StoreStatus.SUCCESS for s in report.stored)
    got = _poll(lambda: sorted(received.iterdir()) if len(list(received.iterdir())) == 5 else [])
    assert {pydicom.dcmread(p).SOPInstanceUID for p in got} == sent
    text = _poll(lambda: log.read_text() if "Association Release" in log.read_text() else "")
    # (The readiness probe also shows up as a received connection, without acknowledgement.)
    assert text.count("Association Acknowledged") == 1


@needs_dcmtk
def test_compressed_files_keep_their_syntax_or_fall_back_to_uncompressed(
    storescp, tmp_path: Path
) -> None:
    native = _series(tmp_path / "native", slices=3)
    jls_dir = tmp_path / "jls"
    jls_dir.mkdir()
    compressed = []
    for path in native:
        target = jls_dir / path.name
        subprocess.run(["dcmcjpls", str(path), str(target)], check=True, timeout=30)
        compressed.append(target)
    expected = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).pixel_array for p in native}

    # A peer that accepts JPEG-LS receives the bytes as they are.
    port, received, _ = storescp("+xa")
    report = StorageSCU(StoreDestination("127.0.0.1", port, "PACS")).send(compressed)
    assert {s.transfer_syntax_uid for s in report.stored} == {JPEGLSLossless}
    got = _poll(lambda: list(received.iterdir()) if len(list(received.iterdir())) == 3 else [])
    assert {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in got} == {JPEGLSLossless}

    # A peer that only takes uncompressed data gets the decoded, identical pixels.
    port, received, _ = storescp()
    report = StorageSCU(StoreDestination("127.0.0.1", port, "PACS")).send(compressed)
    assert all(not pydicom.uid.UID(s.transfer_syntax_uid).is_compressed for s in report.stored)
    got = _poll(lambda: list(received.iterdir()) if len(list(received.iterdir())) == 3 else [])
    for path in got:
        ds = pydicom.dcmread(path)
        assert np.array_equal(ds.pixel_array, expected[ds.SOPInstanceUID])


def test_nobody_listening_is_transient(tmp_path: Path) -> None:
    files = _series(tmp_path / "series", slices=1)
    destination = StoreDestination("127.0.0.1", _free_port(), "PACS", connect_timeout_s=2)
    with pytest.raises(DeliveryTransientError):
        StorageSCU(destination).send(files)


@pytest.fixture
def status_peer() -> Iterator[object]:
    """A pynetdicom Storage SCP on loopback that answers C-STORE with a chosen status."""
    servers = []

    def start(status: int) -> int:
        ae = AE(ae_title="STATUSPEER")
        ae.add_supported_context(CTImageStorage)
        server = ae.start_server(("127.0.0.1", 0), block=False,
                                 evt_handlers=[(evt.EVT_C_STORE, lambda event: status)])
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("status,kind", [
    (StoreStatus.OUT_OF_RESOURCES, DeliveryTransientError),
    (0xA701, DeliveryTransientError),
    (StoreStatus.CANNOT_UNDERSTAND, DeliveryPermanentError),
    (StoreStatus.DATASET_MISMATCH, DeliveryPermanentError),
])
def test_failure_statuses_map_to_kinds(status_peer, tmp_path: Path, status: int, kind) -> None:
    port = status_peer(status)
    files = _series(tmp_path / "series", slices=2)
    with pytest.raises(kind) as info:
        StorageSCU(StoreDestination("127.0.0.1", port, "STATUSPEER")).send(files)
    assert info.value.status == status
    assert info.value.sop_instance_uid is not None


def test_warning_status_counts_as_stored(status_peer, tmp_path: Path) -> None:
    port = status_peer(StoreStatus.WARNING_COERCION)
    report = StorageSCU(StoreDestination("127.0.0.1", port, "STATUSPEER")).send(
        _series(tmp_path / "series", slices=2)
    )
    assert [s.status for s in report.stored] == [StoreStatus.WARNING_COERCION] * 2


def test_sop_class_the_peer_does_not_take_is_permanent(status_peer, tmp_path: Path) -> None:
    port = status_peer(StoreStatus.SUCCESS)
    datasets = volume_series(np.zeros((1, 8, 8), np.int16), (2.0, 0.5, 0.5),
                             identity=StudyIdentity(), spec=SeriesSpec(modality="MR"))
    files = write_series(datasets, str(tmp_path / "mr"))
    with pytest.raises(DeliveryPermanentError, match="accepted none"):
        StorageSCU(StoreDestination("127.0.0.1", port, "STATUSPEER")).send(files)


@requires_orthanc
def test_orthanc_stores_the_batch_and_rejects_a_wrong_called_ae(tmp_path: Path) -> None:
    files = _series(tmp_path / "series", slices=4)
    with running_orthanc(tmp_path / "orthanc", extra={"DicomCheckCalledAet": True}) as pacs:
        report = StorageSCU(StoreDestination("127.0.0.1", pacs.dicom_port, pacs.aet)).send(files)
        assert len(report.stored) == 4
        for path in files:
            original = pydicom.dcmread(path)
            orthanc_id = pacs.find_instance(original.SOPInstanceUID)
            assert orthanc_id is not None
            stored = pydicom.dcmread(io.BytesIO(pacs.instance_file(orthanc_id)))
            assert np.array_equal(stored.pixel_array, original.pixel_array)
        # Orthanc closes the socket right after its A-ASSOCIATE-RJ; now and then pynetdicom
        # sees the close first and reports an abort (transient: retried, nothing lost). The
        # rejection itself must be classed permanent whenever it is read.
        wrong = StorageSCU(StoreDestination("127.0.0.1", pacs.dicom_port, "NOT_ORTHANC"))
        seen: list[Exception] = []
        for _ in range(5):
            try:
                wrong.send(files)
            except (DeliveryPermanentError, DeliveryTransientError) as exc:
                seen.append(exc)
                if isinstance(exc, DeliveryPermanentError):
                    break
        assert isinstance(seen[-1], DeliveryPermanentError), seen
        assert "rejected" in str(seen[-1])
        assert all("aborted" in str(e) for e in seen[:-1]), seen
