"""The ICH pipeline's masks: mapping a segmentation head's output back onto the input grid.

A stand-in network (no weights) segments blood by its CT windows, so what is tested is the
pipeline's slab -> slice and model grid -> input plane mapping, the positive-only rule and the
SegmentMask fields; the trained model is tested in tests/integration/inference.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.cards import parse_card
from inference.evaluation.segmentation import dice
from inference.ich.labels import ICH_CLASSES
from inference.ich.network import IchSegNet
from inference.ich.pipeline import IchPipeline
from inference.loaders import LoadedModel
from inference.phantoms import PhantomSpec, make_head_ct
from inference.training.ich import TrainConfig, card_skeleton


class WindowSegmenter(torch.nn.Module):
    """Class logits fixed by ``positive``; every subtype channel segments 'blood' = bright in
    the brain window (channel 3: centre slab) but not in the subdural window (channel 4)."""

    def __init__(self, positive: tuple[str, ...]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(
            [5.0 if k in positive else -5.0 for k in ICH_CLASSES]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        blood = torch.minimum(x[:, 3] - 0.65, 0.6 - x[:, 4]) * 40
        return self.forward(x), blood[:, None].repeat(1, 5, 1, 1)


def _pipe(positive: tuple[str, ...]) -> IchPipeline:
    card = parse_card({**card_skeleton(TrainConfig()), "explain": None, "weights": {
        "format": "state_dict", "files": [{"path": "weights.pt", "sha256": "0" * 64}]}})
    return IchPipeline(LoadedModel(card, Path("."), WindowSegmenter(positive),
                                   torch.device("cpu")))


@pytest.fixture(scope="module")
def subdural():
    return make_head_ct(PhantomSpec(shape=(16, 160, 160), pixel_mm=1.5, subtypes=("subdural",),
                                    seed=12, noise_hu=0.0))


def test_one_mask_per_positive_subtype_on_the_input_grid(subdural):
    pipe = _pipe(("any", "subdural"))
    pred = pipe.predict(subdural.volume, explain=False)
    assert [m.key for m in pred.masks] == ["subdural"]
    m = pred.masks[0]
    lab = pipe.card.label("subdural")
    assert m.name == lab.name and m.code == lab.code.to_code()
    assert m.mask.shape == subdural.volume.array.shape and m.mask.dtype == np.uint8
    assert set(np.unique(m.mask)) <= {0, 1}
    assert m.voxel_count == int(m.mask.sum()) > 0
    assert m.volume_ml == pytest.approx(m.voxel_count * subdural.volume.voxel_volume_ml)
    d = dice(m.mask, subdural.masks["subdural"])
    print(f"stand-in segmenter Dice {d:.3f}")
    assert d > 0.6


def test_no_mask_for_a_negative_study_or_for_the_any_class(subdural):
    assert _pipe(()).predict(subdural.volume, explain=False).masks == ()
    assert _pipe(("any",)).predict(subdural.volume, explain=False).masks == ()


def test_thin_slices_take_the_mask_of_their_slab():
    ph = make_head_ct(PhantomSpec(shape=(40, 128, 128), pixel_mm=1.8, slice_mm=1.25,
                                  subtypes=("intraparenchymal",), seed=5, noise_hu=0.0))
    pred = _pipe(("any", "intraparenchymal")).predict(ph.volume, explain=False)
    (m,) = pred.masks
    for start in range(0, 40, 4):  # 4 slices of 1.25 mm per 5 mm slab
        block = m.mask[start:start + 4]
        assert (block == block[0]).all()
    assert dice(m.mask, ph.masks["intraparenchymal"]) > 0.5


def test_the_demo_network_gives_class_logits_and_full_size_masks():
    net = IchSegNet().eval()
    x = torch.rand(2, 9, 128, 128)
    with torch.no_grad():
        logits, seg = net.forward_all(x)
        assert torch.equal(net(x), logits)
    assert logits.shape == (2, 6) and seg.shape == (2, 5, 128, 128)
    size_mb = sum(p.numel() for p in net.parameters()) * 4 / 1e6
    assert size_mb < 5
