"""The overlay series (Secondary Capture) and the GSPS of each sample result, judged by
dciodvfy and PixelMed's DicomInstanceValidator (STANDARDS.md "KOS and overlays")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node import synth
from dicom_node.encode import EncodeContext, Finding, Pipeline
from dicom_node.encode.samples import (
    ct_head_case,
    fixed_clock,
    mr_stroke_case,
    radiograph_case,
    sample_algorithm,
)
from dicom_node.encode.views import Views, encode_views, view_uids
from tests.support.peers import pixelmed

CASES = ("ct_ich", "mr_stroke", "dx_fracture")


def _case(name: str) -> tuple[list[Dataset], list[Finding], Pipeline]:
    if name == "ct_ich":
        c = ct_head_case()
        return c.sources, [*c.masks, *c.probabilities], Pipeline.ICH
    if name == "mr_stroke":
        c = mr_stroke_case()
        return c.sources, list(c.masks), Pipeline.STROKE
    c = radiograph_case()
    return c.sources, list(c.boxes), Pipeline.FRACTURE


def encoded(name: str) -> tuple[list[Dataset], Views]:
    sources, findings, pipeline = _case(name)
    ctx = EncodeContext.for_job(str(sources[0].StudyInstanceUID), pipeline,
                                sample_algorithm(f"InferNode {pipeline.value}", "1.2.0"),
                                fixed_clock())
    heat: dict[str, np.ndarray] = {}
    if name == "ct_ich":
        ramp = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
        heat[str(sources[4].SOPInstanceUID)] = ramp
    by_uid = {str(s.SOPInstanceUID): s for s in sources}
    images = {u: by_uid[u] for u in view_uids(sources, findings, heat)}
    return sources, encode_views(sources, findings, images, heat, ctx)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("views")
    out: dict[str, list[Path]] = {}
    for name in CASES:
        sources, views = encoded(name)
        synth.write_series(sources, str(root / name / "src"))
        paths = []
        for ds in views.datasets():
            path = root / name / f"{ds.Modality}-{ds.SOPInstanceUID}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
        out[name] = paths
    return out


@pytest.mark.parametrize("name", CASES)
def test_dcentvfy_sources_overlay_and_gsps_are_consistent(written, validators,
                                                          name: str) -> None:
    sources = sorted((written[name][0].parent / "src").glob("*.dcm"))
    assert sources
    report = validators.run("dcentvfy", *sources, *written[name])
    assert validators.errors(report) == [], report


@pytest.mark.parametrize("name", CASES)
def test_dciodvfy_reports_no_error(written, validators, name: str) -> None:
    kinds = sorted(dcmread(p, stop_before_pixels=True).Modality for p in written[name])
    assert kinds.count("PR") == 1 and kinds.count("OT") >= 1, kinds
    for path in written[name]:
        report = validators.run("dciodvfy", "-new", path)
        assert "SCImage" in report or "GrayscaleSoftcopyPresentationState" in report, report
        assert validators.errors(report) == [], report


def _pixelmed(main: str, *args: Path | str) -> str:
    done = subprocess.run([pixelmed.require(), "-Djava.awt.headless=true", "-cp",
                           str(pixelmed.JAR), main, *map(str, args)],
                          capture_output=True, timeout=120, check=False)
    return (done.stdout + done.stderr).decode("latin-1")


@pytest.mark.slow
def test_pixelmed_reads_and_renders_them(written, tmp_path: Path) -> None:
    """PixelMed's instance validator has no rules for Secondary Capture or presentation state
    IODs in the Debian build ("IOD (SOP Class) unrecognized"; dciodvfy above checks the IODs),
    so PixelMed checks what it can: it renders each overlay image at its size, and parses each
    GSPS with its graphic annotations."""
    sc = [p for name in CASES for p in written[name] if p.name.startswith("OT-")]
    pr = [p for name in CASES for p in written[name] if p.name.startswith("PR-")]
    assert len(sc) >= 3 and len(pr) == 3
    for path in sc[:3]:
        png = tmp_path / f"{path.stem}.png"
        _pixelmed("com.pixelmed.display.ConsumerFormatImageMaker", path, png, "PNG")
        ds = dcmread(path, stop_before_pixels=True)
        with Image.open(png) as image:
            assert image.size == (int(ds.Columns), int(ds.Rows))
    for path in pr:
        dump = _pixelmed("com.pixelmed.dicom.AttributeList", path)
        assert "GraphicAnnotationSequence" in dump and "<POLYLINE>" in dump, dump[-2000:]
        assert "DisplayedAreaSelectionSequence" in dump
