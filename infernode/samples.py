"""Sample studies for the demo: head CT phantoms written as DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dicom_node.synth import SeriesSpec, StudyIdentity, volume_series, write_series


def head_ct(shape: tuple[int, int, int], *, bleed: bool, seed: int) -> np.ndarray:
    """A head-shaped volume in HU: skull, brain, ventricles, optionally a parenchymal bleed."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    cz, cy, cx = (s / 2 for s in shape)
    r = ((z - cz) / (shape[0] * 0.55)) ** 2 + ((y - cy) / (shape[1] * 0.42)) ** 2
    r += ((x - cx) / (shape[2] * 0.36)) ** 2
    vol = np.full(shape, -1000, dtype=np.float32)
    vol[r < 1.0] = 1200  # skull
    vol[r < 0.8] = 35  # brain
    vent = ((y - cy) / (shape[1] * 0.12)) ** 2 + ((x - cx) / (shape[2] * 0.05)) ** 2
    vol[(vent < 1) & (np.abs(z - cz) < shape[0] * 0.2)] = 8
    if bleed:
        blob = ((z - cz) / 3) ** 2 + ((y - cy * 0.8) / 7) ** 2 + ((x - cx * 1.3) / 6) ** 2
        vol[blob < 1] = 70
    vol += rng.normal(0, 4, shape).astype(np.float32)
    return vol.astype(np.int16)


def write_sample_studies(folder: Path, slices: int = 24, size: int = 128) -> list[StudyIdentity]:
    """Writes one positive and one negative head CT under `folder`; returns their identities."""
    studies = []
    for i, bleed in enumerate((True, False)):
        identity = StudyIdentity(
            patient_id=f"DEMO-{i + 1:04d}",
            patient_name=f"Demo^Patient{i + 1}",
            accession_number=f"DEMOACC{i + 1:03d}",
            study_description="CT HEAD WO CONTRAST",
        )
        spec = SeriesSpec(series_description="Head 5mm axial")
        volume = head_ct((slices, size, size), bleed=bleed, seed=i)
        datasets = volume_series(
            volume, (5.0, 200 / size, 200 / size), identity=identity, spec=spec,
            origin=(-100.0, -100.0, -60.0),
        )
        write_series(datasets, str(folder / f"study{i + 1}"))
        studies.append(identity)
    return studies
