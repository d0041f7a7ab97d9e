"""Sample studies for the demo: head CT phantoms (one with a haemorrhage, one without) written
as DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series
from inference.phantoms.head_ct import PhantomSpec, make_head_ct

SAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("subdural haemorrhage", ("subdural",)),
    ("no haemorrhage", ()),
)


def write_sample_studies(folder: Path) -> list[tuple[StudyIdentity, str]]:
    """Writes the sample studies under `folder`; returns each identity with what it shows."""
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
    return studies
