"""The radiograph quality gate (inference.quality.assess_radiograph) with the demo fracture
card's thresholds: a held-out phantom radiograph passes; a thumbnail, a flat image and a clipped
exposure each fail on their own measure, with the reason in words."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from inference.cards import QualitySpec, load_card
from inference.phantoms.radiograph import RadiographSpec, make_radiograph
from inference.quality import assess_radiograph

_CARD = Path(__file__).resolve().parents[3] / "models" / "fracture-demo"


@cache
def _gate() -> QualitySpec:
    spec = load_card(_CARD).quality
    assert spec is not None and spec.min_matrix and spec.min_dynamic_range
    return spec


@cache
def _wrist() -> np.ndarray:
    """A held-out phantom wrist as 12-bit stored values."""
    image = make_radiograph(RadiographSpec(body_part="WRIST", family="heldout", seed=3,
                                           rows=512, cols=448)).image
    scaled = (image - image.min()) / (image.max() - image.min())
    return np.rint(scaled * 4095).astype(np.float32)


def test_a_phantom_radiograph_passes_and_says_what_was_measured() -> None:
    report = assess_radiograph(_wrist(), 12, _gate())
    assert report.passed, report.reasons
    assert report.measures["rows"] == 512 and report.measures["columns"] == 448
    assert report.measures["dynamic_range"] > 0.3
    assert 0 < report.measures["clipped_fraction"] < 0.6


def test_a_thumbnail_fails_on_its_matrix_only() -> None:
    report = assess_radiograph(_wrist()[::4, ::4], 12, _gate())
    assert report.reasons == ("image of 128 x 112 pixels, at least 256 rows and columns "
                              "needed",)


@pytest.mark.parametrize("bits", [12, None])
def test_a_flat_image_fails_on_contrast(bits: int | None) -> None:
    rng = np.random.default_rng(1)
    flat = 1200 + rng.integers(-20, 21, size=(400, 400)).astype(np.float32)
    report = assess_radiograph(flat, bits, _gate())
    if bits is None:  # its own full range: the percentiles span most of it, not flat
        assert report.passed, report.reasons
    else:
        assert not report.passed
        assert report.reasons[0].startswith("no usable contrast (1st to 99th percentile span")
        assert report.measures["dynamic_range"] < 0.05


def test_a_constant_image_fails_without_a_bit_depth_too() -> None:
    report = assess_radiograph(np.full((300, 300), 7.0, np.float32), None, _gate())
    assert any(r.startswith("no usable contrast") for r in report.reasons)
    assert any(r.startswith("saturated or clipped exposure (100%") for r in report.reasons)


def test_a_clipped_exposure_fails_on_the_clipped_share() -> None:
    image = _wrist().copy()
    image[image > np.percentile(image, 30)] = image.max()  # 70 % burnt to the top value
    report = assess_radiograph(image, 12, _gate())
    assert [r.split(" (")[0] for r in report.reasons] == ["saturated or clipped exposure"]
    assert report.measures["clipped_fraction"] > 0.6
