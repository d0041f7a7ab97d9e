"""BLAST-CT v1: strict load of all 12 members and a segmentation of a phantom crop.

The weights live outside the project (../shared/models/blast-ct-v1 by default, or the folder
named by INFERNODE_BLAST_CT_DIR); without them these tests skip and say so. On CPU only one
patch of one member is run (about 8 s).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from inference.blastct import BlastCtPipeline, blast_ct_card, is_blast_ct_dir
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

pytestmark = [
    pytest.mark.skipif(not is_blast_ct_dir(BLAST_DIR),
                       reason=f"BLAST-CT weights not found at {BLAST_DIR} "
                              "(set INFERNODE_BLAST_CT_DIR to the weights folder)"),
    pytest.mark.skipif(not HAVE_PACKAGE, reason="package blast-ct==2.1.0 is not installed"),
]


@pytest.fixture(scope="module")
def blast_pipeline():
    reg = ModelRegistry([BLAST_DIR], device="cpu", warmup=False)
    return reg, reg.get("blast-ct")


def test_card_from_published_checksums_and_all_12_strict(blast_pipeline):
    reg, pipe = blast_pipeline
    card = reg.card("blast-ct")
    assert card.task == "ich-segmentation" and card.license == "Apache-2.0"
    assert [f.path for f in card.weights.files] == [f"model_{i}.pt" for i in range(1, 13)]
    assert len(pipe.networks) == 12
    assert [lab.key for lab in card.labels] == ["intraparenchymal", "extra_axial", "oedema",
                                                "intraventricular"]
    # members differ (a real ensemble, not one file loaded 12 times)
    w = [next(iter(n.parameters())).detach().flatten()[:50] for n in pipe.networks]
    assert not torch.allclose(w[0], w[1])


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


def test_segments_parenchymal_haemorrhage_in_a_phantom_crop(blast_pipeline):
    _, pipe = blast_pipeline
    ph = make_head_ct(PhantomSpec(shape=(100, 180, 150), pixel_mm=1.0, slice_mm=1.0,
                                  subtypes=("intraparenchymal",), seed=21, noise_hu=3.0))
    truth = ph.masks["intraparenchymal"].astype(bool)
    centre = [int(np.mean(ix)) for ix in np.nonzero(truth)]
    roi = tuple(slice(c - 15, c + 15) for c in centre)  # one 30^3 output patch
    pred = pipe.predict(ph.volume, roi=roi, n_models=1)
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
    assert not blood[:, :, :10].any()  # nothing outside the ROI
