"""MR stroke phantoms: truth, physics, sides and the two parameter families."""

import numpy as np
import pytest

from inference.phantoms.mr_stroke import (
    FAMILIES,
    StrokeLesionSpec,
    StrokePhantomSpec,
    make_stroke_mr,
    random_stroke_spec,
)


def test_deterministic_and_lesion_physics():
    spec = StrokePhantomSpec(seed=3, lesions=(StrokeLesionSpec.of_volume("left", 8.0),))
    a, b = make_stroke_mr(spec), make_stroke_mr(spec)
    assert np.array_equal(a.dwi.array, b.dwi.array) and np.array_equal(a.truth, b.truth)
    t = a.truth.astype(bool)
    assert a.lesion_volumes_ml[0] == pytest.approx(8.0, rel=0.2)
    assert float(np.median(a.adc.array[t])) < 620 < float(np.median(a.adc.array[~t & (
        a.adc.array > 650) & (a.adc.array < 1000)]))
    normal = ~t & (a.adc.array > 600) & (a.adc.array < 1000)
    assert np.median(a.dwi.array[t]) > 1.3 * np.median(a.dwi.array[normal])
    # ADC follows the mono-exponential model from b0 and DWI where both are well above noise
    sel = t & (a.b0.array > 100)
    adc = -np.log(a.dwi.array[sel] / a.b0.array[sel]) / 1000 * 1e6
    assert np.allclose(adc, a.adc.array[sel], atol=2.0)


def test_lesion_side_follows_lps_x():
    ph = make_stroke_mr(StrokePhantomSpec(seed=8, lesions=(
        StrokeLesionSpec.of_volume("left", 5.0), StrokeLesionSpec.of_volume("right", 5.0))))
    aff = ph.dwi.affine
    brain_x = []
    for label in (1, 2):
        zyx = np.argwhere(ph.lesion_labels == label).mean(axis=0)
        brain_x.append(aff[0, :3] @ zyx + aff[0, 3])
    head = np.argwhere(ph.dwi.array > np.percentile(ph.dwi.array, 60)).mean(axis=0)
    mid = aff[0, :3] @ head + aff[0, 3]
    assert brain_x[0] > mid > brain_x[1]  # +x is the patient's left


def test_families_differ_in_their_generators():
    tr, ho = FAMILIES["train"], FAMILIES["heldout"]
    assert tr.pixel_mm[0] > ho.pixel_mm[1] and tr.slice_mm[0] > ho.slice_mm[1]
    assert tr.noise != ho.noise and tr.bias != ho.bias and tr.adc_wm != ho.adc_wm
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    specs_tr = [random_stroke_spec(rng_a, "train") for _ in range(10)]
    specs_ho = [random_stroke_spec(rng_b, "heldout") for _ in range(10)]
    assert max(s.spacing[1] for s in specs_ho) < min(s.spacing[1] for s in specs_tr)
    wm = {}
    for fam in ("train", "heldout"):
        ph = make_stroke_mr(StrokePhantomSpec(seed=2, family=fam))
        adc = ph.adc.array
        wm[fam] = float(np.median(adc[(adc > 600) & (adc < 1100)]))
    assert wm["heldout"] > wm["train"]


def test_random_specs_cover_sizes_and_sides():
    rng = np.random.default_rng(5)
    specs = [random_stroke_spec(rng, "train") for _ in range(40)]
    lesions = [les for s in specs for les in s.lesions]
    vols = [4 / 3 * np.pi * les.radius_mm**3 / 1000 for les in lesions]
    assert min(vols) < 1.0 and max(vols) > 20.0 and all(0.2 <= v <= 80.0 for v in vols)
    assert {les.hemisphere for les in lesions} == {"left", "right"}
    assert any(not s.lesions for s in specs) and any(len(s.lesions) > 1 for s in specs)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="family"):
        StrokePhantomSpec(family="other")  # type: ignore[arg-type]
