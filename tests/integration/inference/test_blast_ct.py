"""BLAST-CT v1: strict load of all 12 members, the patch plan, large patches against BLAST-CT's
30^3 output tiles, and a segmentation of a phantom haemorrhage.

The weights live outside the project (../shared/models/blast-ct-v1 by default, or the folder
named by INFERNODE_BLAST_CT_DIR); without them the tests that need them skip and say so. On CPU
one member runs on small 1 mm crops (about 30 s in all on 2 cores).
"""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from inference.blastct import (
    GRID,
    REFERENCE_TILE,
    BlastCtPipeline,
    blast_ct_card,
    is_blast_ct_dir,
    plan_patches,
    to_isotropic,
)
from inference.cards import sha256_file
from inference.errors import ModelLoadError
from inference.phantoms import PhantomSpec, make_head_ct
from inference.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[3]
BLAST_DIR = Path(os.environ.get("INFERNODE_BLAST_CT_DIR",
                                REPO.parent / "shared/models/blast-ct-v1"))

try:
    import blast_ct  # noqa: F401
    HAVE_PACKAGE = True
except ImportError:
    HAVE_PACKAGE = False

needs_weights = pytest.mark.skipif(
    not (is_blast_ct_dir(BLAST_DIR) and HAVE_PACKAGE),
    reason=(f"BLAST-CT weights not found at {BLAST_DIR} (set INFERNODE_BLAST_CT_DIR to the "
            "weights folder)") if not is_blast_ct_dir(BLAST_DIR)
    else "package blast-ct==2.1.0 is not installed")


def _covered(plan, shape):
    hit = np.zeros(shape, dtype=np.int32)
    for p in plan.patches:
        hit[p] += 1
    return hit


def test_plan_whole_volume_in_one_patch_when_memory_allows():
    plan = plan_patches((160, 230, 230), max_voxels=10**8)
    assert plan.patches == ((slice(0, 165), slice(0, 240), slice(0, 240)),)
    assert plan_patches((160, 230, 230)).patches == plan.patches  # no budget: no limit


def test_plan_splits_the_largest_axis_on_the_grid_and_covers_once():
    shape = (160, 230, 230)
    plan = plan_patches(shape, max_voxels=2_000_000)
    assert math.prod(plan.block) <= 2_000_000
    assert plan.block == (90, 120, 120)
    for p in plan.patches:
        for s in p:
            assert s.start % GRID == 0 and (s.stop - s.start) % GRID == 0
    hit = _covered(plan, (165, 240, 240))
    assert (hit[:160, :230, :230] == 1).all()


def test_plan_roi_starts_on_the_grid_and_tiles_are_fixed_cubes():
    roi = (slice(17, 50), slice(3, 20), slice(50, 51))
    plan = plan_patches((100, 100, 100), roi, max_voxels=10**8)
    assert plan.patches == ((slice(15, 60), slice(0, 30), slice(45, 60)),)
    tiles = plan_patches((100, 100, 100), roi, tile=REFERENCE_TILE)
    assert {p[0].start for p in tiles.patches} == {15, 45}
    assert all(s.stop - s.start == 30 for p in tiles.patches for s in p)
    with pytest.raises(ValueError, match="multiple of 15"):
        plan_patches((100, 100, 100), tile=20)


@pytest.fixture(scope="module")
def blast_pipeline():
    reg = ModelRegistry([BLAST_DIR], device="cpu", warmup=False)
    return reg, reg.get("blast-ct")


@needs_weights
def test_card_from_published_checksums_and_all_12_strict(blast_pipeline):
    reg, pipe = blast_pipeline
    card = reg.card("blast-ct")
    assert card.task == "ich-segmentation" and card.license == "Apache-2.0"
    assert [f.path for f in card.weights.files] == [f"model_{i}.pt" for i in range(1, 13)]
    assert len(pipe.networks) == 12
    assert pipe.n_models == 1  # one member on a CPU unless configured
    assert [lab.key for lab in card.labels] == ["intraparenchymal", "extra_axial", "oedema",
                                                "intraventricular"]
    # members differ (a real ensemble, not one file loaded 12 times)
    w = [next(iter(n.parameters())).detach().flatten()[:50] for n in pipe.networks]
    assert not torch.allclose(w[0], w[1])


@needs_weights
def test_strict_loading_rejects_a_member_with_a_missing_key(tmp_path):
    state = torch.load(BLAST_DIR / "model_1.pt", map_location="cpu", weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, tmp_path / "model_1.pt")
    card = blast_ct_card(BLAST_DIR).model_dump(mode="json")
    card["weights"]["files"] = [{"path": "model_1.pt",
                                 "sha256": sha256_file(tmp_path / "model_1.pt")}]
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelLoadError, match="does not fit DeepMedic"):
        BlastCtPipeline(blast_ct_card(tmp_path), tmp_path, torch.device("cpu"))


@pytest.fixture(scope="module")
def iph_phantom():
    return make_head_ct(PhantomSpec(shape=(100, 180, 150), pixel_mm=1.0, slice_mm=1.0,
                                    subtypes=("intraparenchymal",), seed=21, noise_hu=3.0))


@needs_weights
def test_large_patches_equal_blast_ct_30_tiles(blast_pipeline, iph_phantom):
    _, pipe = blast_pipeline
    centre = [int(np.mean(ix)) for ix in np.nonzero(iph_phantom.masks["intraparenchymal"])]
    z0, y0, x0 = ((c - h) // GRID * GRID for c, h in zip(centre, (12, 25, 25), strict=True))
    roi = (slice(z0, z0 + 25), slice(y0, y0 + 50), slice(x0, x0 + 50))
    image = to_isotropic(iph_phantom.volume)  # already 1 mm: the whole phantom is the context
    tiles = pipe.probabilities(image, roi, patch_output=REFERENCE_TILE)  # 1 x 2 x 2 tiles
    pipe.max_patch_voxels = None
    whole = pipe.probabilities(image, roi)  # one 30 x 60 x 60 patch
    pipe.max_patch_voxels = 30 * 60 * 30
    slabs = pipe.probabilities(image, roi)  # two 30 x 60 x 30 patches
    pipe.max_patch_voxels = None
    labels = tiles.argmax(0)[roi]
    assert (labels == 1).sum() > 100 and (labels == 0).sum() > 100  # a real comparison
    for large in (whole, slabs):
        assert torch.equal(large.argmax(0), tiles.argmax(0))
        assert (large - tiles).abs().max() < 1e-4
    # the grid is what makes them equal: a patch 5 voxels off the 15-voxel grid differs
    shifted = pipe.probabilities(image[:, :, 5:], roi[:2] + (slice(x0 - 5, x0 + 45),))
    diff = shifted[:, roi[0], roi[1], x0 - 5 : x0 + 45] - tiles[:, roi[0], roi[1], x0 : x0 + 50]
    assert diff.abs().max() > 1e-3


@needs_weights
def test_segments_parenchymal_haemorrhage_in_a_phantom_crop(blast_pipeline, iph_phantom):
    _, pipe = blast_pipeline
    ph = iph_phantom
    truth = ph.masks["intraparenchymal"].astype(bool)
    centre = [int(np.mean(ix)) for ix in np.nonzero(truth)]
    roi = tuple(slice(c - 15, c + 15) for c in centre)
    pred = pipe.predict(ph.volume, roi=roi)  # one member, one large patch
    blood = np.zeros_like(truth)
    for m in pred.masks:
        if m.key in ("intraparenchymal", "extra_axial", "intraventricular"):
            blood |= m.mask.astype(bool)
        assert m.volume_ml == pytest.approx(m.voxel_count * ph.volume.voxel_volume_ml)
        assert m.mask.shape == ph.volume.array.shape
    t_roi, p_roi = truth[roi], blood[roi]
    recall = (t_roi & p_roi).sum() / t_roi.sum()
    precision = (t_roi & p_roi).sum() / max(p_roi.sum(), 1)
    print(f"BLAST-CT member 1 on phantom IPH crop: recall {recall:.2f} precision {precision:.2f}")
    assert pred.result("intraparenchymal").positive
    assert recall > 0.5 and precision > 0.5
    outside = np.ones_like(truth)
    outside[roi] = False
    assert not blood[outside].any()  # nothing outside the ROI
