"""Synthetic radiographs: reproducible, boxes on the drawn break, two different families."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inference.phantoms.radiograph import (
    BODY_PARTS,
    RADIOGRAPH_FAMILIES,
    RadiographSpec,
    make_radiograph,
    radiograph_cohort,
)


def test_same_spec_same_image_and_boxes() -> None:
    spec = RadiographSpec(body_part="FOREARM", fractures=1, seed=3)
    a, b = make_radiograph(spec), make_radiograph(spec)
    assert np.array_equal(a.image, b.image)
    assert a.boxes == b.boxes
    other = make_radiograph(RadiographSpec(body_part="FOREARM", fractures=1, seed=4))
    assert not np.array_equal(a.image.shape, other.image.shape) or not np.array_equal(
        a.image, other.image)


@pytest.mark.parametrize("part", BODY_PARTS)
def test_every_body_part_draws_its_fractures_inside_the_image(part: str) -> None:
    ph = make_radiograph(RadiographSpec(body_part=part, fractures=1, seed=11, rows=400,
                                        cols=320))
    assert ph.image.shape == (400, 320) and ph.image.dtype == np.float32
    assert len(ph.boxes) == 1
    x0, y0, x1, y1 = ph.boxes[0]
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 400
    assert (x1 - x0) * (y1 - y0) < 0.2 * 400 * 320  # a break zone, not the whole bone
    assert make_radiograph(RadiographSpec(body_part=part, fractures=0, seed=11)).boxes == ()


@pytest.mark.parametrize("seed", [1, 2, 5, 8])
def test_truth_box_holds_the_drawn_break(seed: int) -> None:
    """Same seed with and without the fracture: the limb is the same; pixels the break
    darkens crowd inside the truth box (a displaced fragment darkens thin slivers elsewhere)."""
    kw = {"body_part": "LEG", "seed": seed, "rows": 600, "cols": 480}
    broken = make_radiograph(RadiographSpec(fractures=1, **kw))  # type: ignore[arg-type]
    whole = make_radiograph(RadiographSpec(fractures=0, **kw))  # type: ignore[arg-type]
    diff = broken.image - whole.image
    dark = diff < -0.1 * (whole.image.max() - whole.image.min())
    x0, y0, x1, y1 = (int(round(v)) for v in broken.boxes[0])
    inside = np.zeros_like(dark)
    inside[y0:y1, x0:x1] = True
    density_in = dark[inside].mean()
    density_out = dark[~inside].mean()
    assert density_in > 0.05
    assert density_in > 3 * density_out


def test_large_image_boxes_scale_with_the_image() -> None:
    """A 2800 x 2300 image draws the same limb as its 700 x 575 version, boxes x4."""
    big = make_radiograph(RadiographSpec(body_part="FEMUR", seed=9, rows=2800, cols=2300))
    small = make_radiograph(RadiographSpec(body_part="FEMUR", seed=9, rows=700, cols=575))
    assert big.image.shape == (2800, 2300)
    assert np.allclose(np.array(big.boxes) / 4, np.array(small.boxes), atol=2.0)


def test_families_differ_and_are_drawn_from_their_own_ranges() -> None:
    train, held = RADIOGRAPH_FAMILIES["train"], RADIOGRAPH_FAMILIES["heldout"]
    assert train != held
    assert held.long_side[1] > train.long_side[1]
    assert held.signal_noise and not train.signal_noise
    assert held.cortex[1] > train.cortex[1] and held.texture_px[1] > train.texture_px[1]
    a = make_radiograph(RadiographSpec(seed=1, family="train"))
    b = make_radiograph(RadiographSpec(seed=1, family="heldout"))
    assert a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)


def test_cohort_mixes_normals_and_fractures_and_sizes() -> None:
    specs = radiograph_cohort(40, 5, "heldout")
    assert specs == radiograph_cohort(40, 5, "heldout")
    n_frac = sum(s.fractures > 0 for s in specs)
    assert 8 < n_frac < 36
    assert len({s.body_part for s in specs}) >= 6


def test_a_512_pixel_image_is_fast() -> None:
    make_radiograph(RadiographSpec(seed=0, rows=512, cols=512))
    t0 = time.perf_counter()
    make_radiograph(RadiographSpec(body_part="HAND", seed=1, rows=512, cols=512))
    assert time.perf_counter() - t0 < 1.0


def test_unknown_body_part_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown body part"):
        RadiographSpec(body_part="CHEST")
