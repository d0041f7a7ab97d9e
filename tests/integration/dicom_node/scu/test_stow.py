"""STOW-RS client against a real Orthanc with its DICOMweb plugin."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_node.dicomweb.stow import StowDestination, stow
from dicom_node.scu.errors import DeliveryPermanentError, DeliveryTransientError
from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from tests.support.peers.orthanc import (
    OrthancServer,
    requires_orthanc,
    running_orthanc,
)

pytestmark = requires_orthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


def _series(folder: Path, slices: int = 3) -> list[Path]:
    volume = np.random.default_rng(2).integers(-1000, 1000, (slices, 32, 32)).astype(np.int16)
    datasets = volume_series(volume, (2.0, 0.5, 0.5), identity=StudyIdentity(), spec=SeriesSpec())
    return [Path(p) for p in write_series(datasets, str(folder))]


def test_stow_stores_every_instance_byte_for_byte(pacs: OrthancServer, tmp_path: Path) -> None:
    files = _series(tmp_path)
    report = stow(StowDestination(pacs.dicomweb_url), files)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    assert report.http_status == 200
    assert sorted(report.stored) == sorted(uids)
    for path, uid in zip(files, uids, strict=True):
        orthanc_id = pacs.find_instance(uid)
        assert orthanc_id is not None
        stored = pydicom.dcmread(io.BytesIO(pacs.instance_file(orthanc_id)))
        assert np.array_equal(stored.pixel_array, pydicom.dcmread(path).pixel_array)


def test_stow_to_the_study_url(pacs: OrthancServer, tmp_path: Path) -> None:
    files = _series(tmp_path, slices=1)
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    report = stow(StowDestination(pacs.dicomweb_url), files, study_instance_uid=study)
    assert len(report.stored) == 1


def test_instance_of_another_study_is_refused_permanently(
    pacs: OrthancServer, tmp_path: Path
) -> None:
    files = _series(tmp_path, slices=1)
    with pytest.raises(DeliveryPermanentError):
        stow(StowDestination(pacs.dicomweb_url), files, study_instance_uid="1.2.3.4.5")


def test_garbage_part_is_refused_permanently(pacs: OrthancServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all" * 10)
    with pytest.raises(DeliveryPermanentError):
        stow(StowDestination(pacs.dicomweb_url), [bad])


def test_nobody_listening_is_transient(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryTransientError):
        stow(StowDestination(f"http://127.0.0.1:{port}/dicom-web", timeout_s=2), _series(tmp_path))


def test_wrong_credentials_are_permanent(tmp_path: Path) -> None:
    files = _series(tmp_path / "series", slices=1)
    with running_orthanc(tmp_path / "orthanc", users={"node": "secret"}) as locked:
        with pytest.raises(DeliveryPermanentError, match="401"):
            stow(StowDestination(locked.dicomweb_url, bearer_token="wrong"), files)
