"""The input quality gate (inference.quality) on head CT and MR diffusion phantoms: a good
study passes every check; each kind of bad study fails the check meant for it, with a reason a
reader understands."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.cards import QualitySpec, load_card
from inference.phantoms.head_ct import PhantomSpec, make_head_ct
from inference.phantoms.mr_stroke import StrokeLesionSpec, StrokePhantomSpec, make_stroke_mr
from inference.quality import assess
from inference.types import Volume

MODELS = Path(__file__).resolve().parents[3] / "models"


@cache
def _ct_gate() -> QualitySpec:
    gate = load_card(MODELS / "ich-demo").quality
    assert gate is not None
    return gate


@cache
def _head() -> Volume:
    return make_head_ct(PhantomSpec(shape=(20, 128, 128), pixel_mm=1.8, subtypes=("subdural",),
                                    seed=11)).volume


def _with(array: np.ndarray, volume: Volume | None = None) -> Volume:
    base = volume or _head()
    return Volume(array=array.astype(np.float32), spacing=base.spacing, affine=base.affine)


def test_a_good_head_ct_passes_and_says_what_was_measured() -> None:
    report = assess(_head(), _ct_gate())
    assert report.passed, report.reasons
    m = report.measures
    assert m["slices"] == 20 and m["coverage_mm"] >= 100
    assert 20 <= m["foreground_median"] <= 45  # brain HU dominate the head
    assert 3 <= m["noise"] <= 10  # the phantom's noise is 6 HU
    assert m["metal_fraction"] == 0 and m["motion_mm"] < 1


def test_too_few_slices_fail_on_count_and_coverage() -> None:
    report = assess(Volume(array=_head().array[10:14], spacing=_head().spacing), _ct_gate())
    assert not report.passed
    assert any("4 slices, at least 8" in r for r in report.reasons), report.reasons
    assert any("cover 20 mm" in r for r in report.reasons), report.reasons


def test_thick_slabs_fail_on_spacing() -> None:
    head = _head()
    thick = Volume(array=head.array[::2], spacing=(10.0, *head.spacing[1:]))
    report = assess(thick, _ct_gate())
    assert [r for r in report.reasons if "slice spacing 10.0 mm" in r], report.reasons


def test_stored_values_without_rescale_fail_on_intensity() -> None:
    # a CT whose Rescale Intercept was lost: air near 0, brain near 1064
    report = assess(_with(_head().array + 1024.0), _ct_gate())
    assert any(r.startswith("background intensity") for r in report.reasons), report.reasons
    # and brain shown 100 HU too bright (a miscalibrated scanner) is outside the range
    bright = _head().array + np.where(_head().array > -500, 100.0, 0.0).astype(np.float32)
    report = assess(_with(bright), _ct_gate())
    assert [r for r in report.reasons if r.startswith("intensities outside")], report.reasons


def test_metal_fails_on_metal() -> None:
    arr = _head().array.copy()
    arr[8:16, 70:90, 70:90] = 3500.0  # a clip and its bloom
    report = assess(_with(arr), _ct_gate())
    assert [r for r in report.reasons if r.startswith("metal artefact")], report.reasons


def test_noise_fails_on_noise_only() -> None:
    rng = np.random.default_rng(3)
    arr = _head().array + rng.normal(0, 60, _head().array.shape).astype(np.float32)
    report = assess(_with(arr), _ct_gate())
    assert [r for r in report.reasons if r.startswith("image noise")] and len(
        report.reasons) == 1, report.reasons
    assert 45 <= report.measures["noise"] <= 75


def test_a_head_that_moved_between_slices_fails_on_motion() -> None:
    arr = _head().array.copy()
    # the patient turned: from slice 12 on the head lies 8 px (14 mm) to the side
    arr[12:] = ndimage.shift(arr[12:], (0, 0, 8), order=0, mode="nearest")
    report = assess(_with(arr), _ct_gate())
    assert [r for r in report.reasons if r.startswith("patient motion")], report.reasons
    assert report.measures["motion_mm"] == pytest.approx(8 * _head().spacing[2], abs=1.5)


def test_an_mr_diffusion_study_passes_the_stroke_gate_and_a_scout_does_not() -> None:
    gate = load_card(MODELS / "stroke-adc-threshold").quality
    assert gate is not None and gate.foreground_relative
    ph = make_stroke_mr(StrokePhantomSpec(shape=(24, 64, 64), spacing=(3.0, 2.6, 2.6),
                                          lesions=(StrokeLesionSpec("left", 10.0),), seed=4))
    good = assess(ph.dwi, gate)
    assert good.passed, good.reasons
    assert good.measures["noise"] < 0.2
    scout = assess(Volume(array=ph.dwi.array[10:13], spacing=ph.dwi.spacing), gate)
    assert not scout.passed and any("3 slices" in r for r in scout.reasons)


def test_an_empty_image_has_no_anatomy() -> None:
    empty = Volume(array=np.full((20, 64, 64), -1000.0, np.float32), spacing=(5.0, 1.0, 1.0))
    report = assess(empty, _ct_gate())
    assert "no anatomy found in the images" in report.reasons
