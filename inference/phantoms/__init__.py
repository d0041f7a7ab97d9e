"""Synthetic head CT phantoms with ground-truth haemorrhage masks, seeded and reproducible."""

from .head_ct import HeadPhantom, PhantomSpec, make_head_ct, phantom_cohort, random_spec

__all__ = ["HeadPhantom", "PhantomSpec", "make_head_ct", "phantom_cohort", "random_spec"]
