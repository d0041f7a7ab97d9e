"""Sample inputs for the encoders: small synthetic source series (dicom_node.synth) with
findings of each kind, for tests and the demo. Not used on any clinical path.

- `ct_head_case`: 12 slices of 64 x 64 CT with two haemorrhage masks (one spanning slices
  with gaps, so empty frames occur), ICH subtype probabilities with key slices;
- `mr_stroke_case`: MR DWI series with one infarct mask;
- `radiograph_case`: one DX image with two fracture boxes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from pydicom.dataset import Dataset

from dicom_node import synth
from dicom_node.encode import codes
from dicom_node.encode.codes import SCT, Coded
from dicom_node.encode.types import (
    AlgorithmInfo,
    Box,
    BoxFinding,
    Clock,
    Lesion,
    MaskFinding,
    ProbabilityFinding,
)

# Finding codes as a model card gives them (the vetted table is inference/codes.py; a test
# keeps these equal to it): sample data for the sample findings below.
INTRAPARENCHYMAL_HEMORRHAGE = Coded("274100004", SCT, "Cerebral hemorrhage", "model card")
INTRAVENTRICULAR_HEMORRHAGE = Coded("274110009", SCT, "Intraventricular hemorrhage",
                                    "model card")
EPIDURAL_HEMORRHAGE = Coded("83329005", SCT, "Epidural hemorrhage", "model card")
SUBARACHNOID_HEMORRHAGE = Coded("21454007", SCT, "Subarachnoid hemorrhage", "model card")
SUBDURAL_HEMORRHAGE = Coded("35486000", SCT, "Subdural hemorrhage", "model card")


def sample_algorithm(name: str, version: str = "1.0.0", weights: bytes = b"demo") -> AlgorithmInfo:
    """A demo algorithm whose weights digest is the SHA-256 of `weights`."""
    return AlgorithmInfo(
        name=name,
        version=version,
        manufacturer="InferNode",
        model_name=f"{name} (not for clinical use)"[:64],
        weights_sha256=hashlib.sha256(weights).hexdigest(),
    )


def fixed_clock(when: datetime | None = None) -> Clock:
    """A clock that always answers the same instant (default 2026-01-02 03:04:05 UTC)."""
    instant = when or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return lambda: instant


@dataclass(frozen=True)
class Case:
    """Source instances and findings of one sample study."""

    sources: list[Dataset]
    masks: list[MaskFinding] = field(default_factory=list)
    probabilities: list[ProbabilityFinding] = field(default_factory=list)
    boxes: list[BoxFinding] = field(default_factory=list)


def ct_head_case(slices: int = 12, size: int = 64, spacing: float = 0.5) -> Case:
    """Non-contrast CT head with haemorrhage masks and ICH subtype probabilities."""
    identity = synth.StudyIdentity()
    spec = synth.SeriesSpec(modality="CT")
    volume = np.full((slices, size, size), 30, dtype=np.int16)
    thickness = 5.0
    sources = synth.volume_series(
        volume, (thickness, spacing, spacing), identity=identity, spec=spec
    )
    voxel = thickness * spacing * spacing
    iph = np.zeros(volume.shape, dtype=bool)
    iph[3:6, 10:22, 12:20] = True
    iph[8, 30:34, 30:36] = True  # a second component after empty slices 6-7
    ivh = np.zeros(volume.shape, dtype=bool)
    ivh[5:7, 40:50, 28:31] = True  # overlaps IPH's slice 5: segments may overlap
    empty = np.zeros(volume.shape, dtype=bool)
    masks = [
        MaskFinding("IPH", INTRAPARENCHYMAL_HEMORRHAGE, codes.HEMORRHAGE_MORPHOLOGY,
                    codes.BRAIN, iph, voxel, probability=0.91),
        MaskFinding("IVH", INTRAVENTRICULAR_HEMORRHAGE, codes.HEMORRHAGE_MORPHOLOGY,
                    codes.BRAIN, ivh, voxel),
        MaskFinding("EDH", EPIDURAL_HEMORRHAGE, codes.HEMORRHAGE_MORPHOLOGY,
                    codes.BRAIN, empty, voxel),
    ]
    key = (str(sources[4].SOPInstanceUID), str(sources[5].SOPInstanceUID))
    probabilities = [
        ProbabilityFinding("any", codes.INTRACRANIAL_HEMORRHAGE, codes.BRAIN, 0.93, 0.5, True, key),
        ProbabilityFinding("SAH", SUBARACHNOID_HEMORRHAGE, codes.BRAIN, 0.08, 0.5, False),
        ProbabilityFinding("SDH", SUBDURAL_HEMORRHAGE, codes.BRAIN, 0.71, 0.5, True,
                           (str(sources[6].SOPInstanceUID),)),
    ]
    return Case(sources=sources, masks=masks, probabilities=probabilities)


def mr_stroke_case(slices: int = 12, size: int = 64) -> Case:
    """MR brain DWI (b=1000) with one infarct mask."""
    identity = synth.StudyIdentity(study_description="MR BRAIN WO CONTRAST")
    spec = synth.SeriesSpec(modality="MR", series_description="DWI b1000", diffusion_b_value=1000)
    volume = np.full((slices, size, size), 200, dtype=np.int16)
    sources = synth.volume_series(volume, (4.0, 1.0, 1.0), identity=identity, spec=spec)
    infarct = np.zeros(volume.shape, dtype=bool)
    infarct[2:5, 20:30, 20:26] = True
    infarct[7:9, 40:44, 10:14] = True
    lesions = (Lesion(0.72, codes.LEFT, str(sources[3].SOPInstanceUID)),
               Lesion(0.128, codes.RIGHT, str(sources[7].SOPInstanceUID)))
    masks = [MaskFinding("infarct", codes.CEREBRAL_INFARCTION, codes.INFARCT_MORPHOLOGY,
                         codes.BRAIN, infarct, 4.0, probability=0.88,
                         laterality=codes.BILATERAL, lesions=lesions)]
    return Case(sources=sources, masks=masks)


def radiograph_case(rows: int = 96, columns: int = 80) -> Case:
    """One DX wrist radiograph with two fracture boxes (one touching the image edge)."""
    identity = synth.StudyIdentity(study_description="XR WRIST")
    spec = synth.SeriesSpec(modality="DX", series_description="Wrist AP", body_part="WRIST",
                            image_type=("ORIGINAL", "PRIMARY"))
    image = np.full((rows, columns), 1000, dtype=np.uint16)
    source = synth.radiograph(image, (0.2, 0.2), identity=identity, spec=spec)
    uid = str(source.SOPInstanceUID)
    boxes = [
        BoxFinding("fracture-1", uid, Box(10.0, 12.5, 30.0, 40.0), 0.87, codes.BONE),
        BoxFinding("fracture-2", uid, Box(60.0, 70.0, float(columns), float(rows)), 0.64,
                   codes.BONE),
    ]
    return Case(sources=[source], boxes=boxes)
