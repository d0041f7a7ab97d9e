"""Phantom families: wide training ranges, a held-out family outside them, non-bleed mimics."""

import numpy as np
import pytest

from inference.phantoms import PhantomSpec, make_head_ct
from inference.phantoms.families import FAMILIES, Appearance, draw_anatomy, family
from inference.phantoms.head_ct import family_cohort, family_spec

SMALL = dict(shape=(10, 128, 128), pixel_mm=1.8)


def test_family_phantoms_are_seeded_and_deterministic():
    a = make_head_ct(PhantomSpec(subtypes=("subdural",), seed=3, family="train", **SMALL))
    b = make_head_ct(PhantomSpec(subtypes=("subdural",), seed=3, family="train", **SMALL))
    c = make_head_ct(PhantomSpec(subtypes=("subdural",), seed=3, family="heldout", **SMALL))
    assert np.array_equal(a.volume.array, b.volume.array)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown phantom family"):
        PhantomSpec(family="nope")


def test_heldout_parameters_lie_outside_the_training_ranges():
    train, held = FAMILIES["train"], FAMILIES["heldout"]
    assert held.shape_p[0] > train.shape_p[1]          # boxier skulls
    assert held.skull_hu[0] >= train.skull_hu[1]        # denser bone
    assert held.hu_offset[0] >= train.hu_offset[1]      # larger calibration offset
    assert held.blur_mm[0] >= train.blur_mm[1]          # smoother kernel
    assert train.noise_corr_mm == (0, 0) and held.noise_corr_mm[0] > 0  # correlated noise


def test_drawn_values_respect_the_family_ranges():
    fam = family("heldout")
    rng = np.random.default_rng(0)
    for _ in range(20):
        anat = draw_anatomy(rng, fam)
        app = Appearance.draw(rng, fam)
        assert fam.shape_p[0] <= anat.shape_p <= fam.shape_p[1]
        assert fam.skull_mm[0] <= anat.skull_mm <= fam.skull_mm[1]
        assert fam.hu_offset[0] <= abs(app.hu_offset) <= fam.hu_offset[1]
        assert anat.white_hu <= anat.grey_hu - 4


def test_family_cases_span_thin_and_thick_slices_and_fields_of_view():
    rng = np.random.default_rng(1)
    specs = [family_spec(rng, "train", matrix=64, max_slices=32) for _ in range(60)]
    slices = np.array([s.slice_mm for s in specs])
    fovs = np.array([s.pixel_mm * 64 for s in specs])
    assert slices.min() >= 0.5 and slices.max() <= 5.0
    assert slices.min() < 1.0 and slices.max() > 3.5
    assert fovs.min() < 200 and fovs.max() > 270
    assert all(s.shape[0] <= 32 for s in specs)
    assert 0.2 < np.mean([not s.subtypes for s in specs]) < 0.6


def test_calcifications_are_dense_but_never_labelled():
    """Non-bleed hyperdensities (calcifications) are present in normal heads, above blood
    density, with no haemorrhage label."""
    seen = 0
    for ph in family_cohort(6, 11, "train", matrix=96, max_slices=16):
        if ph.spec.subtypes:
            continue
        assert ph.masks == {} and ph.study_labels["any"] == 0
        anat = draw_anatomy(np.random.default_rng(ph.spec.seed), family("train"))
        seen += len(anat.calcs)
    assert seen >= 1


def test_thick_slices_average_their_thickness():
    """A 5 mm family slice is the mean of three sub-slices: the skull's partial volume at the
    vertex gives intermediate values a point-sampled slice would not have."""
    spec = PhantomSpec(shape=(6, 96, 96), pixel_mm=2.4, slice_mm=5.0, z_shift_mm=55.0, seed=2,
                       family="train")
    ph = make_head_ct(spec)
    top = ph.volume.array[-1]
    assert ((top > 150) & (top < 500)).sum() > 0


def test_each_subtype_still_has_a_mask_and_labels_in_the_families():
    for k, subtype in enumerate(("epidural", "subdural", "subarachnoid", "intraparenchymal",
                                 "intraventricular")):
        ph = make_head_ct(PhantomSpec(shape=(16, 128, 128), pixel_mm=1.8, slice_mm=5.0,
                                      subtypes=(subtype,), seed=20 + k, family="heldout"))
        assert ph.masks[subtype].sum() > 20
        assert ph.study_labels[subtype] == 1 and ph.study_labels["any"] == 1
