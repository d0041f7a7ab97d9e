"""Shared builders for the stroke tests: a threshold-method card and phantoms."""

from __future__ import annotations

import numpy as np

from inference.cards import ModelCard, parse_card
from inference.types import Volume


def threshold_card(**params: object) -> ModelCard:
    return parse_card({
        "id": "stroke-test", "version": "1", "name": "stroke test", "task": "stroke-segmentation",
        "modality": "MR", "intended_use": "tests", "not_for_clinical_use": True,
        "license": "Apache-2.0", "weights": None,
        "method": {"name": "adc-threshold", "params": dict(params)},
        "labels": [{"key": "infarct", "name": "Acute infarct",
                    "code": {"value": "432504007", "meaning": "Cerebral infarction"}}],
    })


def mirrored(vol: Volume) -> Volume:
    """The same patient geometry stored with the columns reversed (x index runs right-to-left):
    array flipped along x and the affine's x column negated with the origin moved."""
    aff = vol.affine.copy()
    nx = vol.array.shape[2]
    aff[:3, 3] = aff[:3, 3] + aff[:3, 2] * (nx - 1)
    aff[:3, 2] = -aff[:3, 2]
    return Volume(array=np.ascontiguousarray(vol.array[:, :, ::-1]), spacing=vol.spacing,
                  affine=aff, slice_ids=vol.slice_ids)
