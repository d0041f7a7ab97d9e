"""Held-out phantom studies written as DICOM, for a model's monitoring reference when the site
has no validation studies of its own yet (`infernode monitor reference MODEL_DIR` without a
cases folder): the project's phantom generators, held-out family, written by the same synthetic
series writers as the demo, so that they are read exactly as the node reads a study."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dicom_node.synth import (
    SeriesSpec,
    StudyIdentity,
    radiograph,
    volume_series,
    write_series,
)
from inference.phantoms.head_ct import family_cohort
from inference.phantoms.radiograph import RadiographSpec, make_radiograph

SUPPORTED = ("ich-classification", "fracture-detection")


def write_phantom_cases(task: str, folder: Path, n: int, seed: int, *, matrix: int = 256,
                        body_parts: Sequence[str] = ()) -> int:
    """Write `n` held-out phantom studies for a model of `task` under `folder` (one
    sub-folder each); returns how many were written.

    Raises:
        ValueError: no phantom generator for `task` (see SUPPORTED).
    """
    if task == "ich-classification":
        for i, phantom in enumerate(family_cohort(n, seed, "heldout", matrix, 48)):
            hu = np.round(phantom.volume.array).astype(np.int16)
            write_series(volume_series(
                hu, phantom.volume.spacing, identity=StudyIdentity(
                    patient_id=f"REF-{i:04d}", accession_number=f"REF{i:05d}"),
                spec=SeriesSpec()), str(folder / f"case{i:04d}"))
        return n
    if task == "fracture-detection":
        parts = list(body_parts) or ["FOREARM"]
        rng = np.random.default_rng(seed)
        for i in range(n):
            part = parts[i % len(parts)]
            image = make_radiograph(RadiographSpec(body_part=part, fractures=int(rng.integers(
                0, 3)), family="heldout", seed=seed + i))
            scaled = (image.image - image.image.min()) / max(float(np.ptp(image.image)), 1e-6)
            ds = radiograph(np.round(scaled * 4095).astype(np.uint16), image.pixel_spacing_mm,
                            identity=StudyIdentity(patient_id=f"REF-{i:04d}",
                                                   accession_number=f"REF{i:05d}"),
                            spec=SeriesSpec(modality="DX", series_description=part.title(),
                                            body_part=part,
                                            image_type=("ORIGINAL", "PRIMARY")))
            write_series([ds], str(folder / f"case{i:04d}"))
        return n
    raise ValueError(f"no held-out phantoms for task {task!r} (have: {', '.join(SUPPORTED)}); "
                     "give a folder of validation studies")
