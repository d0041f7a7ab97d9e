"""The outputs every viewer shows, for any pipeline: the overlay series (key images with the
result burned in) and the GSPS over the original images (`dicom_node.encode.views`), stored
beside the job's other outputs with UIDs derived from the job, as output kinds
`dicom-overlay` and `dicom-gsps` (a DICOM destination sends both unless its `kinds` say
otherwise).

The saliency maps of the prediction (Grad-CAM of ICH's positive classes) are drawn on the
overlay images of their slices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.encode.types import AlgorithmInfo, EncodeContext, Finding
from dicom_node.encode.views import encode_views, view_uids
from inference.types import Prediction
from workers.db import utcnow
from workers.messages import JobContext, OutputRef
from workers.outbox.config import GSPS, OVERLAY
from workers.pipelines.files import write_dataset
from workers.pipelines.report import Reporter

log = logging.getLogger(__name__)

_DRAWING_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError,
                   NotImplementedError)
"""What an image or header the encoders cannot draw on raises (pydicom's pixel handlers and
highdicom's checks included); the result itself stands without its views."""


def saliency_by_image(prediction: Prediction) -> dict[str, np.ndarray]:
    """Source SOP Instance UID -> the prediction's saliency on that slice (the largest value of
    every class's map where several classes share a slice)."""
    out: dict[str, np.ndarray] = {}
    for s in prediction.saliency:
        heat = np.asarray(s.heatmap, dtype=np.float32)
        out[s.slice_id] = np.maximum(out[s.slice_id], heat) if s.slice_id in out else heat
    return out


def write_views(reporter: Reporter, algorithm: AlgorithmInfo, context: JobContext,
                sources: Sequence[Dataset], findings: Sequence[Finding],
                paths: Mapping[str, str], prediction: Prediction
                ) -> tuple[tuple[OutputRef, ...], str | None]:
    """Encode and store the overlay series and GSPS of a job's positive findings (nothing for a
    negative result); returns what was stored and, when they could not be drawn, why (for the
    job's summary: the SEG, SR and KOS already written stand without them). ``paths`` maps a
    source SOP Instance UID to its spool file (the overlay's key images are read whole)."""
    heatmaps = saliency_by_image(prediction)
    ctx = EncodeContext.for_job(context.study_instance_uid, reporter.spec.kind, algorithm,
                                utcnow, amendment=context.amendment)
    try:
        uids = view_uids(sources, findings, heatmaps)
        images = {uid: dcmread(paths[uid]) for uid in uids if uid in paths}
        views = encode_views(sources, findings, images, heatmaps, ctx)
    except _DRAWING_ERRORS as exc:
        log.warning("job %s: overlay series and GSPS not written (%s)", context.job_id,
                    type(exc).__name__)
        return (), f"not written: {type(exc).__name__}"
    if not views.datasets():
        return (), None
    folder = reporter.facts.output_dir / context.study_instance_uid / reporter.spec.name
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for ds in views.datasets():
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        write_dataset(path, ds)
        kind = GSPS if ds is views.gsps else OVERLAY
        refs.append(OutputRef(kind=kind, uid=str(ds.SOPInstanceUID), path=str(path)))
    return tuple(refs), None
