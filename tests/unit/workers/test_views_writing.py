"""workers.pipelines.views: the overlay series and GSPS stored beside a job's outputs, with
their own output kinds; an image they cannot be drawn on leaves the result standing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from dicom_node import synth
from dicom_node.encode import Pipeline
from dicom_node.encode.samples import mr_stroke_case, sample_algorithm
from inference.types import ModelInfo, Prediction, SaliencyMap
from workers.messages import JobContext
from workers.pipelines.report import NodeFacts, Reporter, ReportSpec
from workers.pipelines.views import saliency_by_image, write_views

_ALGORITHM = sample_algorithm("InferNode stroke")
_PREDICTION = Prediction("stroke", ModelInfo("m", "1", "m", "0" * 64, "x", True), (),
                         np.zeros((0, 0)), ())


def _setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    case = mr_stroke_case()
    files = synth.write_series(case.sources, str(tmp_path / "src"))
    paths = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
    reporter = Reporter(NodeFacts(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "out"),
                        ReportSpec("stroke", Pipeline.STROKE, "MR", "infarct"),
                        lambda: _ALGORITHM)
    context = JobContext(job_id="j1", attempt=1,
                         study_instance_uid=str(case.sources[0].StudyInstanceUID),
                         pipeline="stroke", model_version="1.0.0", series=())
    return case, paths, reporter, context


def test_overlay_and_gsps_are_stored_with_their_kinds(tmp_path: Path) -> None:
    case, paths, reporter, context = _setup(tmp_path)
    refs, note = write_views(reporter, _ALGORITHM, context, case.sources, case.masks, paths,
                             _PREDICTION)
    assert note is None
    kinds = sorted(r.kind for r in refs)
    assert kinds.count("dicom-gsps") == 1 and "dicom-overlay" in kinds
    for ref in refs:
        assert ref.path is not None
        ds = pydicom.dcmread(ref.path)
        assert str(ds.SOPInstanceUID) == ref.uid
        assert Path(ref.path).parent == tmp_path / "out" / context.study_instance_uid / "stroke"
    # nothing for a negative result
    assert write_views(reporter, _ALGORITHM, context, case.sources, [], paths,
                       _PREDICTION) == ((), None)


def test_an_image_that_cannot_be_drawn_leaves_a_note_not_a_failure(tmp_path: Path) -> None:
    case, paths, reporter, context = _setup(tmp_path)
    for path in paths.values():
        ds = pydicom.dcmread(path)
        ds.PixelData = ds.PixelData[:10]  # too short for Rows x Columns
        ds.save_as(path)
    refs, note = write_views(reporter, _ALGORITHM, context, case.sources, case.masks, paths,
                             _PREDICTION)
    assert refs == () and note is not None and note.startswith("not written: ")


def test_saliency_maps_of_one_slice_are_merged() -> None:
    a = np.zeros((4, 4), np.float32)
    b = np.zeros((4, 4), np.float32)
    a[0, 0], b[1, 1] = 1.0, 0.5
    prediction = Prediction(
        "ich", _PREDICTION.model, (), np.zeros((0, 0)), (),
        saliency=(SaliencyMap("x", 0, "1.2.3", a, (0, 0), b""),
                  SaliencyMap("y", 0, "1.2.3", b, (1, 1), b"")))
    merged = saliency_by_image(prediction)["1.2.3"]
    assert merged[0, 0] == 1.0 and merged[1, 1] == 0.5
