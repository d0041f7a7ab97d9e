"""The ICH trainer's field-of-view augmentation: off by default; when drawn, it zooms a sample
so one model cell is within the configured range, keeps every mask pixel of the centre slab in
the crop (so the labels stay true), may cut the head at the image edge, and leaves slivers
(labelled, but no mask pixel on the grid) and already fine cells alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from inference.cards import parse_card
from inference.ich.labels import ICH_CLASSES, ICH_SUBTYPES
from inference.training.ich import Augment, TrainConfig, card_skeleton, fov_zoom, model_cell_mm

S = len(ICH_SUBTYPES)


def _batch(b: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    hu = torch.full((b, 3, 128, 128), -1000.0)
    hu[:, :, 8:120, 8:120] = 35.0  # a head filling most of the grid
    seg = torch.zeros((b, S, 128, 128))
    seg[:, 0, 40:50, 90:100] = 1.0  # a 10 x 10 cell bleed of the first subtype
    y = torch.zeros((b, len(ICH_CLASSES)))
    y[:, 0] = 1.0
    y[:, ICH_CLASSES.index(ICH_SUBTYPES[0])] = 1.0
    return hu, seg, y


def test_off_by_default() -> None:
    assert Augment().p_fov == 0.0
    assert TrainConfig().augment.p_fov == 0.0


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_probability_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="p_fov"):
        Augment(p_fov=bad)


def test_zoom_reaches_the_cell_range_and_keeps_the_bleed() -> None:
    hu, seg, y = _batch()
    cell = torch.full((hu.shape[0],), 2.0)
    aug = Augment(p_fov=1.0)
    out_hu, out_seg = fov_zoom(hu, seg, y, cell, aug, torch.Generator().manual_seed(3))
    area = out_seg[:, 0].sum(dim=(1, 2))
    # 2 mm cells zoomed to 0.8-1.4 mm: the 100-cell bleed grows 2.0-6.3 times (bilinear edges)
    zoom2 = (2.0 / torch.tensor(aug.fov_cell_mm)) ** 2
    assert torch.all(area >= 100 * zoom2[1] * 0.8) and torch.all(area <= 100 * zoom2[0] * 1.2)
    assert area.std() > 10  # zooms and centres vary between samples
    # no bleed cell lost at the crop edge: the mask never touches the image border
    border = out_seg[:, 0, [0, -1], :].sum() + out_seg[:, 0, :, [0, -1]].sum()
    assert float(border) == 0.0
    # the head is cut by the image edge in some samples: no air left along a border
    rim = out_hu[:, 0, 0, :] > -500
    assert bool(rim.all(dim=1).any())
    # context slabs of one sample are zoomed alike
    assert torch.equal(out_hu[:, 0], out_hu[:, 2])


def test_slivers_fine_cells_and_undrawn_samples_are_left_alone() -> None:
    hu, seg, y = _batch(4)
    seg[0] = 0.0  # labelled bleed with no mask pixel: position unknown
    cell = torch.tensor([2.0, 0.75, 2.0, 2.0])  # sample 1 already finer than the range
    out_hu, out_seg = fov_zoom(hu, seg, y, cell, Augment(p_fov=1.0),
                               torch.Generator().manual_seed(4))
    assert torch.equal(out_hu[0], hu[0]) and torch.equal(out_seg[0], seg[0])
    assert torch.equal(out_hu[1], hu[1]) and torch.equal(out_seg[1], seg[1])
    assert not torch.equal(out_hu[2], hu[2])
    none_hu, none_seg = fov_zoom(hu, seg, y, cell, Augment(p_fov=0.0),
                                 torch.Generator().manual_seed(4))
    assert torch.equal(none_hu, hu) and torch.equal(none_seg, seg)


def test_model_cell_of_a_tight_field_of_view() -> None:
    card = parse_card({**card_skeleton(TrainConfig()), "weights": {
        "format": "state_dict", "files": [{"path": "weights.pt", "sha256": "0" * 64}]}})
    assert model_cell_mm((128, 128), (5.0, 0.9, 0.9), card) == pytest.approx(0.9)
    assert model_cell_mm((512, 512), (5.0, 0.45, 0.45), card) == pytest.approx(1.8)


def test_cli_option_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import inference.training.ich as ich
    from infernode.cli import app

    seen: dict[str, TrainConfig] = {}

    def fake_train(out: Path, cfg: TrainConfig, log: object = print) -> None:
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(ich, "train_ich", fake_train)
    CliRunner().invoke(app, ["models", "train", "ich", "--out", str(tmp_path), "--fov-p", "0.3"])
    assert seen["cfg"].augment.p_fov == 0.3
    assert seen["cfg"].augment.hu_shift == Augment().hu_shift
