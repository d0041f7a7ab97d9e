"""Sample studies for the demo: head CT phantoms (one with a haemorrhage, one without), an
MR stroke study (DWI b=0/b=1000 and the ADC map, an infarct in the left hemisphere) and a
wrist radiograph with a fracture (DX), written as DICOM series."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_node.synth import (
    SYNTH_UID_ROOT,
    SeriesSpec,
    StudyIdentity,
    radiograph,
    volume_series,
    write_series,
)
from inference.phantoms.head_ct import PhantomSpec, make_head_ct
from inference.phantoms.mr_stroke import StrokeLesionSpec, StrokePhantomSpec, make_stroke_mr
from inference.phantoms.radiograph import RadiographSpec, make_radiograph
from inference.types import Volume

BPlacement = Callable[[Dataset, float], None]
"""Writes a diffusion b-value into an instance the way one scanner vendor does."""


def b_in_comments(ds: Dataset, b: float) -> None:
    ds.ImageComments = f"b={b:g}"


def _geometry(volume: Volume) -> dict[str, Any]:
    """synth.volume_series arguments that place `volume`'s voxels where its affine says."""
    affine, spacing = volume.affine, volume.spacing
    return {
        "origin": tuple(float(v) for v in affine[:3, 3]),
        "row_direction": tuple(float(v) for v in affine[:3, 2] / spacing[2]),
        "column_direction": tuple(float(v) for v in affine[:3, 1] / spacing[1]),
        "slice_step": tuple(float(v) for v in affine[:3, 0]),
    }


def _stored(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 65535).astype(np.uint16)


def diffusion_series(b0: Volume, dwi: Volume, adc: Volume | None, *, identity: StudyIdentity,
                     frame_of_reference_uid: str, place_b: BPlacement = b_in_comments,
                     adc_frame_of_reference_uid: str | None = None,
                     separate_b0: bool = False) -> list[Dataset]:
    """An MR diffusion acquisition as a scanner sends it: one DWI series with the b=0 and the
    b=1000 images (the b-value where `place_b` puts it), and the ADC map as its own series
    (DERIVED\\PRIMARY\\DIFFUSION\\ADC) on its own grid, unless `adc` is None; in its own
    Frame of Reference when `adc_frame_of_reference_uid` says so; the b=0 images in a series of
    their own when `separate_b0`."""
    spec = SeriesSpec(modality="MR", series_description="ep2d_diff_tra b0 b1000 TRACEW",
                      series_number=5, body_part="BRAIN",
                      frame_of_reference_uid=frame_of_reference_uid,
                      image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"))
    b0_spec = (replace(spec, series_description="ep2d_diff_tra b0", series_number=4,
                       series_instance_uid=generate_uid(SYNTH_UID_ROOT))
               if separate_b0 else spec)
    datasets: list[Dataset] = []
    for b, volume, series in ((0.0, b0, b0_spec), (1000.0, dwi, spec)):
        images = volume_series(_stored(volume.array), volume.spacing, identity=identity,
                               spec=series, **_geometry(volume))
        for ds in images:
            place_b(ds, b)
            if b and not separate_b0:  # the b=1000 images follow the b=0 ones in the series
                ds.InstanceNumber = int(ds.InstanceNumber) + len(images)
        datasets.extend(images)
    if adc is not None:
        adc_spec = replace(spec, series_description="ep2d_diff_tra_ADC", series_number=6,
                           series_instance_uid=generate_uid(SYNTH_UID_ROOT),
                           frame_of_reference_uid=(adc_frame_of_reference_uid
                                                   or frame_of_reference_uid),
                           image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"))
        datasets.extend(volume_series(_stored(adc.array), adc.spacing, identity=identity,
                                      spec=adc_spec, **_geometry(adc)))
    return datasets

SAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("subdural haemorrhage", ("subdural",)),
    ("no haemorrhage", ()),
)


DEMO_RADIOGRAPH = RadiographSpec(body_part="WRIST", fractures=1, family="train", seed=7,
                                 rows=768, cols=640)
"""The demo's wrist radiograph: one drawn fracture."""


def write_sample_studies(folder: Path, *, with_mr: bool = True
                         ) -> list[tuple[StudyIdentity, str]]:
    """Writes the sample studies under `folder` (the MR stroke study and the wrist
    radiograph too unless `with_mr` is false); returns each identity with what it shows."""
    studies = []
    for i, (label, subtypes) in enumerate(SAMPLES):
        identity = StudyIdentity(
            patient_id=f"DEMO-{i + 1:04d}",
            patient_name=f"Demo^Patient{i + 1}",
            accession_number=f"DEMOACC{i + 1:03d}",
            study_description="CT HEAD WO CONTRAST",
        )
        spec = PhantomSpec(shape=(32, 256, 256), subtypes=subtypes, seed=100 + i)
        phantom = make_head_ct(spec)
        hu = np.round(phantom.volume.array).astype(np.int16)
        datasets = volume_series(
            hu, (spec.slice_mm, spec.pixel_mm, spec.pixel_mm), identity=identity,
            spec=SeriesSpec(series_description="Head 5mm axial"),
            origin=(-115.0, -115.0, -80.0),
        )
        write_series(datasets, str(folder / f"study{i + 1}"))
        studies.append((identity, label))
    if not with_mr:
        return studies
    identity = StudyIdentity(patient_id="DEMO-0003", patient_name="Demo^Patient3",
                             accession_number="DEMOACC003",
                             study_description="MR BRAIN WO CONTRAST")
    stroke = make_stroke_mr(StrokePhantomSpec(shape=(32, 80, 80), spacing=(3.0, 2.6, 2.6),
                                              lesions=(StrokeLesionSpec("left", 13.0),),
                                              seed=3))
    series = diffusion_series(stroke.b0, stroke.dwi, stroke.adc, identity=identity,
                              frame_of_reference_uid=generate_uid(SYNTH_UID_ROOT))
    write_series(series, str(folder / "study3"))
    studies.append((identity, "acute infarct (MR diffusion)"))
    identity = StudyIdentity(patient_id="DEMO-0004", patient_name="Demo^Patient4",
                             accession_number="DEMOACC004", study_description="XR WRIST")
    wrist = make_radiograph(DEMO_RADIOGRAPH)
    scaled = (wrist.image - wrist.image.min()) / max(float(np.ptp(wrist.image)), 1e-6)
    xray = radiograph(np.round(scaled * 4095).astype(np.uint16), wrist.pixel_spacing_mm,
                      identity=identity, spec=SeriesSpec(
                          modality="DX", series_description="Wrist PA", body_part="WRIST",
                          image_type=("ORIGINAL", "PRIMARY")))
    xray.ImageLaterality = "L" if wrist.laterality == "left" else "R"
    write_series([xray], str(folder / "study4"))
    studies.append((identity, "wrist fracture (radiograph)"))
    return studies
