"""The committed fracture demo model through the registry: verify, boxes on held-out phantoms
in each image's own pixel coordinates, body-part handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.errors import InputError
from inference.evaluation.detection import box_iou
from inference.fracture import BodyPartNotSupportedError, FracturePipeline, select_images
from inference.phantoms.radiograph import RadiographSpec, make_radiograph, radiograph_cohort
from inference.registry import ModelRegistry
from inference.types import Radiograph, Volume

MODEL = "fracture-demo"


@pytest.fixture(scope="module")
def registry(demo_models_dir: Path) -> ModelRegistry:
    return ModelRegistry([demo_models_dir], device="cpu")


@pytest.fixture(scope="module")
def pipe(registry: ModelRegistry) -> FracturePipeline:
    p = registry.get(MODEL)
    assert isinstance(p, FracturePipeline)
    return p


def test_card_and_verify(registry: ModelRegistry, pipe: FracturePipeline) -> None:
    card = registry.card(MODEL)
    assert card.task == "fracture-detection" and card.not_for_clinical_use
    assert card.labels[0].code.value == "72704001" and card.labels[0].key == "fracture"
    assert {"HAND", "WRIST", "FOREARM", "KNEE"} <= set(card.body_parts)
    assert 0 < pipe.box_threshold < 1
    assert (Path(registry.directory(MODEL)) / "weights.pt").stat().st_size < 2_000_000
    res = registry.verify(MODEL)
    assert res.files_checked == 1 and "top box IoU" in res.detail


def test_boxes_land_on_held_out_fractures(pipe: FracturePipeline) -> None:
    """Held-out phantoms with one fracture: the top box (whatever its score) fits the drawn
    fracture (IoU >= 0.5) in most; at the card's threshold half or more are called with a
    box on the fracture (IoU >= 0.3) and at most one normal image is called (held-out image
    sensitivity is 0.60 and specificity 1.00 at that threshold, see docs/MODELS.md);
    fracture images score higher than normal ones."""
    specs = [s for s in radiograph_cohort(40, 4711, "heldout", normal_fraction=0.5)]
    broken = [s for s in specs if s.fractures == 1][:8]
    normal = [s for s in specs if s.fractures == 0][:8]
    fitted, called, p_broken, p_normal = 0, 0, [], []
    for spec in broken:
        ph = make_radiograph(spec)
        pred = pipe.predict_images([ph.radiograph("b")], box_threshold=0.0)
        res = pred.result("fracture")
        p_broken.append(res.probability)
        top = box_iou(pred.detections[0].box, ph.boxes[0]) if pred.detections else 0.0
        fitted += top >= 0.5
        called += res.positive and any(
            d.score >= pipe.box_threshold and box_iou(d.box, ph.boxes[0]) >= 0.3
            for d in pred.detections)
    for spec in normal:
        ph = make_radiograph(spec)
        p_normal.append(pipe.predict_images([ph.radiograph("n")]).result("fracture").probability)
    assert fitted >= 5, (fitted, p_broken)
    assert called >= 4, (called, p_broken)
    assert sum(p >= pipe.card.labels[0].threshold for p in p_normal) <= 1, p_normal
    assert np.mean(p_broken) > np.mean(p_normal) + 0.2, (p_broken, p_normal)


def test_prediction_shape_and_study_fields(pipe: FracturePipeline) -> None:
    a = make_radiograph(RadiographSpec(body_part="FEMUR", fractures=1, family="heldout",
                                       seed=12, rows=700, cols=560))
    b = make_radiograph(RadiographSpec(body_part="HAND", fractures=0, family="heldout",
                                       seed=13, rows=500, cols=420))
    pred = pipe.predict_images([b.radiograph("img-b"), a.radiograph("img-a")])
    assert pred.pipeline == "fracture" and pred.slice_ids == ("img-b", "img-a")
    assert pred.slice_probabilities.shape == (2, 1)
    res = pred.result("fracture")
    k = int(np.argmax(pred.slice_probabilities[:, 0]))
    assert res.key_slice is not None and res.key_slice.index == k
    assert res.key_slice.slice_id == pred.slice_ids[k]
    assert res.probability == pytest.approx(float(pred.slice_probabilities.max()))
    assert res.code.value == "72704001" and res.threshold == pipe.card.labels[0].threshold
    scores = [d.score for d in pred.detections]
    assert scores == sorted(scores, reverse=True)
    assert all(s >= pipe.box_threshold for s in scores)
    for d in pred.detections:
        shape = a.image.shape if d.image_id == "img-a" else b.image.shape
        assert d.box[2] <= shape[1] and d.box[3] <= shape[0] and d.label == "fracture"
    assert pred.timings is not None and pred.timings.device == "cpu"
    assert pred.timings.total_s >= pred.timings.preprocess_s > 0


def test_large_image_boxes_map_back_to_its_pixels(pipe: FracturePipeline) -> None:
    """A 700 x 575 radiograph and the same pixels blown up 4x (2800 x 2300): the model sees
    the same working image, so every box on the big one is the small one's times four (the
    mapping back is exact), inside the big image."""
    small = make_radiograph(RadiographSpec(body_part="FEMUR", fractures=1, family="heldout",
                                           seed=21, rows=700, cols=575))
    big = Radiograph(array=np.kron(small.image, np.ones((4, 4), dtype=np.float32)),
                     image_id="big", body_part="FEMUR")
    ps = pipe.predict_images([small.radiograph("small")], box_threshold=0.0)
    pb = pipe.predict_images([big], box_threshold=0.0)
    assert ps.detections and len(pb.detections) >= len(ps.detections) - 2
    for d in ps.detections[:3]:
        scaled = tuple(4 * v for v in d.box)
        assert max(box_iou(scaled, b.box) for b in pb.detections) > 0.95  # type: ignore[arg-type]
    assert all(d.box[2] <= 2300 and d.box[3] <= 2800 for d in pb.detections)


def test_large_phantoms_fractures_are_found_where_drawn(pipe: FracturePipeline) -> None:
    """2800 x 2300 held-out phantoms drawn at that size: in most, a box at the card's
    threshold overlaps the drawn fracture (the demo finds about half to two thirds of
    held-out fractures; see docs/MODELS.md)."""
    found = 0
    for part in ("FEMUR", "FOREARM", "KNEE", "WRIST"):
        ph = make_radiograph(RadiographSpec(body_part=part, fractures=1, family="heldout",
                                            seed=22, rows=2800, cols=2300))
        pred = pipe.predict_images([ph.radiograph(part)])
        assert all(d.box[2] <= 2300 and d.box[3] <= 2800 for d in pred.detections)
        found += max((box_iou(d.box, ph.boxes[0]) for d in pred.detections), default=0.0) >= 0.3
    assert found >= 2


def test_intensity_offset_and_bit_depth_do_not_matter(pipe: FracturePipeline) -> None:
    ph = make_radiograph(RadiographSpec(body_part="LEG", fractures=1, family="heldout", seed=5,
                                        rows=640, cols=512))
    base = pipe.predict_images([ph.radiograph("x")], box_threshold=0.0)
    shifted = Radiograph(array=ph.image * 0.25 - 1000.0, image_id="x", body_part="LEG")
    other = pipe.predict_images([shifted], box_threshold=0.0)
    assert other.slice_probabilities[0, 0] == pytest.approx(base.slice_probabilities[0, 0],
                                                            abs=0.02)


def test_body_parts_the_card_does_not_list_are_skipped(pipe: FracturePipeline) -> None:
    ph = make_radiograph(RadiographSpec(body_part="WRIST", fractures=0, seed=3, rows=400,
                                        cols=320))
    chest = Radiograph(array=ph.image, image_id="chest", body_part="CHEST")
    unknown = Radiograph(array=ph.image, image_id="unknown")
    kept, skipped = select_images([chest, ph.radiograph("wrist"), unknown], pipe.body_parts)
    assert [k.image_id for k in kept] == ["wrist"]
    assert [(s.image_id, s.reason) for s in skipped] == [
        ("chest", "body_part_not_supported"), ("unknown", "body_part_unknown")]
    pred = pipe.predict_images([chest, ph.radiograph("wrist"), unknown])
    assert pred.slice_ids == ("wrist",)
    with pytest.raises(BodyPartNotSupportedError) as err:
        pipe.predict_images([chest, unknown])
    assert err.value.reason == "body_part_not_supported"
    assert "CHEST" in str(err.value) and "unknown" in str(err.value)
    assert isinstance(err.value, InputError)


def test_volumes_are_refused(pipe: FracturePipeline) -> None:
    vol = Volume.from_array(np.zeros((2, 16, 16), dtype=np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(InputError):
        pipe.predict(vol)
