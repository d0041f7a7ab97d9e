"""Test data: one Enhanced MR diffusion image whose frames interleave b=0 and b=1000 (and,
optionally, single-direction b=1000 frames) at the same slice positions."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicom_node.synth import SeriesSpec, StudyIdentity
from dicom_node.volume.synth_enhanced import enhanced_series


def _diffusion(b: float, directionality: str) -> DicomSequence:
    item = Dataset()
    item.DiffusionBValue = float(b)
    item.DiffusionDirectionality = directionality
    return DicomSequence([item])


def enhanced_diffusion(
    volumes: Sequence[tuple[float, str, np.ndarray]], spacing: Sequence[float], *,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    row_direction: Sequence[float] = (1.0, 0.0, 0.0),
    column_direction: Sequence[float] = (0.0, 1.0, 0.0),
) -> Dataset:
    """One Enhanced MR image: for each slice position, one frame per (b, directionality,
    volume) of `volumes`, in that order (frames interleaved slice by slice)."""
    spec = SeriesSpec(modality="MR", series_description="ep2d_diff enhanced",
                      image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"),
                      diffusion_b_value=1000.0)
    identity = StudyIdentity()
    parts = [enhanced_series(v.astype(np.uint16), spacing, identity=identity, spec=spec,
                             origin=origin, row_direction=row_direction,
                             column_direction=column_direction)
             for _, _, v in volumes]
    out = parts[0]
    slices = volumes[0][2].shape[0]
    frame_bytes = len(out.PixelData) // slices
    items, pixels = [], []
    for k in range(slices):
        for part, (b, directionality, _) in zip(parts, volumes, strict=True):
            item = copy.deepcopy(part.PerFrameFunctionalGroupsSequence[k])
            item.MRDiffusionSequence = _diffusion(b, directionality)
            items.append(item)
            pixels.append(part.PixelData[k * frame_bytes:(k + 1) * frame_bytes])
    out.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    out.PixelData = b"".join(pixels)
    out.NumberOfFrames = len(items)
    return out
