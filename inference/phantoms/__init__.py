"""Synthetic phantoms with ground truth, seeded and reproducible: head CT with haemorrhage masks
and MR diffusion (b0, DWI, ADC) with acute infarct masks."""

from .head_ct import HeadPhantom, PhantomSpec, make_head_ct, phantom_cohort, random_spec
from .mr_stroke import (
    StrokeLesionSpec,
    StrokePhantom,
    StrokePhantomSpec,
    make_stroke_mr,
    random_stroke_spec,
    stroke_cohort,
)

__all__ = ["HeadPhantom", "PhantomSpec", "StrokeLesionSpec", "StrokePhantom",
           "StrokePhantomSpec", "make_head_ct", "make_stroke_mr", "phantom_cohort",
           "random_spec", "random_stroke_spec", "stroke_cohort"]
