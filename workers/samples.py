"""Real-looking StudyReady values for tests, the benchmark and the demo, built without any
DICOM traffic. The header values follow what scanners write (ImageType per PS3.3 C.7.6.1.1.2,
SOP classes per PS3.4 B.5); UIDs are random under the sample branch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydicom.uid import generate_uid

from dicom_node.events import SeriesSummary, StudyReady
from dicom_node.synth import SYNTH_UID_ROOT
from workers.config import (
    CT_IMAGE,
    DX_FOR_PRESENTATION,
    SECONDARY_CAPTURE,
    XRAY_RADIATION_DOSE_SR,
)

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def series(**fields: Any) -> SeriesSummary:
    """A series summary; unspecified fields are those of an axial non-contrast head CT."""
    values: dict[str, Any] = {
        "series_instance_uid": generate_uid(SYNTH_UID_ROOT), "modality": "CT",
        "body_part_examined": "HEAD", "series_description": "Head 5mm axial",
        "protocol_name": "ROUTINE HEAD", "image_type": ("ORIGINAL", "PRIMARY", "AXIAL"),
        "sop_class_uids": (CT_IMAGE,), "instance_count": 32, "slice_thickness": 5.0,
        "calling_ae": "CT01", "called_ae": "INFERNODE",
    }
    values.update(fields)
    return SeriesSummary(**values)


def study(*members: SeriesSummary, amendment: int = 0, study_uid: str | None = None,
          completed_at: datetime | None = None) -> StudyReady:
    return StudyReady(study_instance_uid=study_uid or generate_uid(SYNTH_UID_ROOT),
                      series=members, completed_at=completed_at or datetime.now(UTC),
                      amendment=amendment)


def ct_localizer() -> SeriesSummary:
    return series(series_description="Topogram 0.6 T20s",
                  image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), instance_count=1,
                  slice_thickness=0.6)


def ct_dose_report() -> SeriesSummary:
    return series(modality="SR", series_description="Dose Report", image_type=(),
                  sop_class_uids=(XRAY_RADIATION_DOSE_SR,), instance_count=1,
                  slice_thickness=None, body_part_examined=None)


def ct_dose_screen() -> SeriesSummary:
    """The 'Patient Protocol' secondary capture many CT scanners add."""
    return series(modality="CT", series_description="Patient Protocol",
                  image_type=("DERIVED", "SECONDARY", "OTHER"),
                  sop_class_uids=(SECONDARY_CAPTURE,), instance_count=1, slice_thickness=None)


def ct_reformat() -> SeriesSummary:
    return series(series_description="Head Cor MPR 3mm",
                  image_type=("DERIVED", "SECONDARY", "REFORMATTED", "AVERAGE"),
                  instance_count=40, slice_thickness=3.0)


def ct_head_study() -> StudyReady:
    """A typical non-contrast head CT as a PACS receives it: topogram, axial, a coronal
    reformat and the dose report."""
    return study(ct_localizer(), series(), ct_reformat(), ct_dose_report())


def mr_stroke_study() -> StudyReady:
    """An MR brain with localizer, DWI trace, ADC map and a FLAIR."""
    mr = {"modality": "MR", "sop_class_uids": (MR_IMAGE,), "protocol_name": None,
          "calling_ae": "MR01"}
    return study(
        series(**mr, series_description="localizer", image_type=("ORIGINAL", "PRIMARY", "M"),
               instance_count=3, slice_thickness=8.0, body_part_examined="BRAIN"),
        series(**mr, series_description="ep2d_diff_3scan_trace_p2",
               image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"), instance_count=60,
               slice_thickness=5.0, body_part_examined="BRAIN"),
        series(**mr, series_description="ep2d_diff_3scan_trace_p2_ADC",
               image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), instance_count=20,
               slice_thickness=5.0, body_part_examined="BRAIN"),
        series(**mr, series_description="t2_tirm_tra_dark-fluid",
               image_type=("ORIGINAL", "PRIMARY", "M", "NORM"), instance_count=25,
               slice_thickness=5.0, body_part_examined="BRAIN"),
    )


def dx_wrist_study() -> StudyReady:
    dx = {"modality": "DX", "sop_class_uids": (DX_FOR_PRESENTATION,), "protocol_name": None,
          "body_part_examined": "WRIST", "slice_thickness": None, "instance_count": 1,
          "calling_ae": "DX01"}
    return study(series(**dx, series_description="Wrist PA", image_type=("ORIGINAL", "PRIMARY")),
                 series(**dx, series_description="Wrist LAT",
                        image_type=("ORIGINAL", "PRIMARY")))
