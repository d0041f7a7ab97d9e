"""Acquisition augmentation of ICH training batches: air stays air, a sample's context slabs
share one draw, and the draws vary between samples within the configured ranges; blur and
noise touch the head only."""

from __future__ import annotations

import torch

from inference.training.ich import Augment, augment_hu


def _slabs() -> torch.Tensor:
    hu = torch.full((6, 3, 32, 32), -1000.0)
    hu[:, :, 8:24, 8:24] = 35.0  # brain
    hu[:, :, 8:24, 6:8] = 1200.0  # bone
    return hu


def test_air_stays_air_and_context_slabs_share_the_draw() -> None:
    aug = Augment(p_blur=0.0, p_noise=0.0)
    out = augment_hu(_slabs(), aug, torch.Generator().manual_seed(1))
    assert torch.all(out[:, :, :4, :4] == -1000.0)
    shift = out[:, :, 16, 16] - 35.0  # (samples, context slabs)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift))
    assert shift.abs().max() <= aug.hu_shift and shift.std() > 1.0
    bone = out[:, 0, 16, 7]
    assert bone.min() >= 300 + 900 * aug.bone_scale[0] - aug.hu_shift - 1e-3
    assert bone.max() <= 300 + 900 * aug.bone_scale[1] + aug.hu_shift + 1e-3


def test_blur_and_noise_change_only_the_head() -> None:
    aug = Augment(hu_shift=0.0, bone_scale=(1.0, 1.0), p_blur=1.0, p_noise=1.0)
    out = augment_hu(_slabs(), aug, torch.Generator().manual_seed(2))
    # far from the head: only the blur's rounding
    assert torch.allclose(out[:, :, :4, :4], torch.tensor(-1000.0), atol=0.01)
    inside = out[:, :, 12:20, 12:20]
    assert inside.std() > 0.1 and (inside - 35.0).abs().mean() < 3 * aug.noise_hu

