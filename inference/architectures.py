"""Network architectures a card may name, mapped to MONAI constructors.

Cards name an architecture from this allow-list rather than an import path so that a model
directory cannot make the node import arbitrary code (MONAI bundles can: see loaders).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.networks import nets

from .errors import ModelCardError
from .ich.network import IchSegNet

ARCHITECTURES: dict[str, Callable[..., torch.nn.Module]] = {
    "monai.DenseNet": nets.DenseNet,
    "monai.DenseNet121": nets.DenseNet121,
    "monai.BasicUNet": nets.BasicUNet,
    "monai.UNet": nets.UNet,
    "monai.SegResNet": nets.SegResNet,
    "monai.Classifier": nets.Classifier,
    "infernode.IchSegNet": IchSegNet,
}


def build_network(name: str, params: dict[str, Any]) -> torch.nn.Module:
    """Instantiate architecture ``name`` with ``params``.

    Raises:
        ModelCardError: unknown name, or parameters the constructor rejects.
    """
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ModelCardError(f"unknown architecture {name!r}; known: {known}") from None
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:
        raise ModelCardError(f"architecture {name}: bad parameters: {exc}") from exc
