"""Diffusion MR as scanners send it, through DCMTK's storescu into the node, read back from the
spool: a Siemens mosaic in Implicit VR Little Endian (private elements without their VR on the
wire) and an Enhanced MR image with interleaved b=0 / b=1000 frames in JPEG-LS lossless."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from dicom_node.selection import series_facts
from dicom_node.volume import read_series
from tests.support.peers.dcmtk import run, storescu
from tests.unit.dicom_node.volume.diffusion_builders import enhanced_diffusion
from tests.unit.dicom_node.volume.mosaic_builders import mosaic_image


def _stored(node) -> dict[str, str]:
    with node.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT sop_instance_uid, path FROM instances").all()
    return {r[0]: str(r[1]) for r in rows}


def _convert(tool: list[str], ds: pydicom.Dataset, folder: Path, name: str) -> Path:
    source, target = folder / f"{name}-src.dcm", folder / f"{name}.dcm"
    ds.save_as(source, enforce_file_format=True)
    result = run([*tool, str(source), str(target)])
    assert result.returncode == 0, result.stderr
    return target


def test_mosaic_and_enhanced_diffusion_received_from_dcmtk_read_into_volumes(
        node_factory, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    trace = rng.integers(0, 2000, size=(9, 16, 12)).astype(np.uint16)
    b0 = rng.integers(0, 2000, size=(9, 16, 12)).astype(np.uint16)
    mosaic = mosaic_image(trace, (4.0, 2.0, 2.0), origin=(-12.0, -16.0, -20.0), b_value=1000)
    enhanced = enhanced_diffusion([(0.0, "NONE", b0), (1000.0, "ISOTROPIC", trace)],
                                  (4.0, 2.0, 2.0), origin=(-12.0, -16.0, -20.0))
    files = [_convert(["dcmconv", "+ti"], mosaic, tmp_path, "mosaic"),
             _convert(["dcmcjpls"], enhanced, tmp_path, "enhanced")]

    node = node_factory()
    for path, flag in zip(files, ("-xi", "-xt"), strict=True):
        result = storescu(node.server.port, [path], extra=[flag])
        assert result.returncode == 0, result.stderr
    stored = _stored(node)

    mosaic_path = stored[mosaic.SOPInstanceUID]
    header = pydicom.dcmread(mosaic_path, stop_before_pixels=True)
    assert header.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert series_facts([header]).b_values == ((1000.0, (mosaic.SOPInstanceUID,)),)
    volume = read_series([mosaic_path])
    np.testing.assert_array_equal(volume.voxels, trace.astype(np.float32))
    np.testing.assert_allclose(volume.origin, (-12.0, -16.0, -20.0), atol=1e-4)

    enhanced_path = stored[enhanced.SOPInstanceUID]
    facts = series_facts([pydicom.dcmread(enhanced_path, stop_before_pixels=True)])
    dwi = read_series([enhanced_path], frames=facts.frames_at(1000.0))
    np.testing.assert_array_equal(dwi.voxels, trace.astype(np.float32))
    np.testing.assert_allclose(dwi.affine, volume.affine, atol=1e-4)
