"""Synthetic phantoms with ground truth, seeded and reproducible: head CT with haemorrhage masks,
MR diffusion (b0, DWI, ADC) with acute infarct masks, limb radiographs with fracture boxes."""

from .head_ct import HeadPhantom, PhantomSpec, make_head_ct, phantom_cohort, random_spec
from .mr_stroke import (
    StrokeLesionSpec,
    StrokePhantom,
    StrokePhantomSpec,
    make_stroke_mr,
    random_stroke_spec,
    stroke_cohort,
)
from .radiograph import (
    RadiographPhantom,
    RadiographSpec,
    make_radiograph,
    radiograph_cohort,
)

__all__ = ["HeadPhantom", "PhantomSpec", "RadiographPhantom", "RadiographSpec",
           "StrokeLesionSpec", "StrokePhantom", "StrokePhantomSpec", "make_head_ct",
           "make_radiograph", "make_stroke_mr", "phantom_cohort", "radiograph_cohort",
           "random_spec", "random_stroke_spec", "stroke_cohort"]
