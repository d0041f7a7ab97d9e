"""Uncertainty after inference: test-time augmentation by a left-right flip.

The brain is close to mirror-symmetric and every model here is trained with left-right flips,
so a prediction the model is sure of survives the flip: the same classes positive, about the
same probabilities, about the same segmented volume (all masks together, so a subtype that
changes its name but not its extent does not count). The card may restrict the classes
compared (ICH: the study-level "any"). A large spread between the prediction on
the study and on its mirror image (thresholds in the model card's ``uncertainty`` section,
:class:`inference.cards.UncertaintySpec`) means the answer hangs on details the model should
not depend on; the runner then reports "indeterminate — read as usual" with the reason.

Radiographs (:func:`mirrored_images`) are compared image by image when the card says
``per_image``: the largest change of an image's own probability.

Flipping only the voxel order (the affine unchanged) mirrors the anatomy in the model's eyes;
volumes and probabilities do not depend on the side, so nothing is mapped back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .cards import UncertaintySpec
from .types import Prediction, Radiograph, StudyInput, Volume


@dataclass(frozen=True)
class SpreadReport:
    """The measured spread (``measures``) and why it is too large (``reasons``; empty when the
    prediction is stable)."""

    measures: dict[str, float]
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.reasons


def mirrored_images(images: Sequence[Radiograph]) -> list[Radiograph]:
    """The radiographs flipped left-right (columns reversed), ids and header facts kept."""
    return [replace(i, array=np.ascontiguousarray(i.array[:, ::-1])) for i in images]


def mirrored(study: StudyInput) -> StudyInput:
    """The study with every volume flipped left-right (the last, x, axis)."""
    return StudyInput(volumes={
        role: Volume(array=np.ascontiguousarray(v.array[:, :, ::-1]), spacing=v.spacing,
                     affine=v.affine, slice_ids=v.slice_ids)
        for role, v in study.volumes.items()})


def spread(base: Prediction, other: Prediction, spec: UncertaintySpec) -> SpreadReport:
    """Compare the prediction on the study with the one on its mirror image."""
    measures: dict[str, float] = {}
    reasons: list[str] = []
    p0, p1 = base.study_probabilities, other.study_probabilities
    keys = [k for k in p0 if k in p1 and (not spec.classes or k in spec.classes)]
    diffs = {k: abs(p0[k] - p1[k]) for k in keys}
    if diffs:
        worst = max(diffs, key=lambda k: diffs[k])
        measures["probability_spread"] = round(diffs[worst], 4)
        if spec.max_probability_spread is not None and diffs[worst] > spec.max_probability_spread:
            reasons.append(f"the {worst} probability changes by {diffs[worst]:.2f} when the "
                           f"image is mirrored (at most {spec.max_probability_spread:g})")
    if spec.per_image:
        image = _image_spread(base, other, keys)
        if image is not None:
            where, diff = image
            measures["image_probability_spread"] = round(diff, 4)
            if spec.max_probability_spread is not None and diff > spec.max_probability_spread:
                reasons.append(f"the {where} probability of an image changes by {diff:.2f} "
                               f"when the image is mirrored (at most "
                               f"{spec.max_probability_spread:g})")
    if spec.decisions_must_agree:
        changed = sorted((set(base.positive) ^ set(other.positive)) & set(keys))
        measures["decisions_changed"] = len(changed)
        if changed:
            reasons.append(f"the call on {', '.join(changed)} changes when the image is "
                           f"mirrored")
    if base.masks or other.masks:
        a = sum(float(m.volume_ml) for m in base.masks)
        b = sum(float(m.volume_ml) for m in other.masks)
        change = abs(a - b) / max(a, b, spec.volume_floor_ml)
        measures["volume_spread"] = round(change, 4)
        if spec.max_volume_spread is not None and change > spec.max_volume_spread:
            reasons.append(f"the segmented volume changes by {change:.0%} when the image is "
                           f"mirrored (at most {spec.max_volume_spread:.0%})")
    return SpreadReport(measures, tuple(reasons))


def _image_spread(base: Prediction, other: Prediction, keys: Sequence[str]
                  ) -> tuple[str, float] | None:
    """The largest per-image (per-slice) probability change over the compared classes, with
    its class; None when the two predictions do not cover the same images."""
    a, b = np.asarray(base.slice_probabilities), np.asarray(other.slice_probabilities)
    if base.slice_ids != other.slice_ids or a.shape != b.shape or a.ndim != 2 or not a.size:
        return None
    columns = {c.key: j for j, c in enumerate(base.classes)}
    picked = [(k, columns[k]) for k in keys if k in columns and columns[k] < a.shape[1]]
    if not picked:
        return None
    return max(((k, float(np.abs(a[:, j] - b[:, j]).max())) for k, j in picked),
               key=lambda kv: kv[1])
