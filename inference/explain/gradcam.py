"""Grad-CAM (Selvaraju et al., ICCV 2017): class-weighted activations of a convolutional layer.

The map shows where a layer's features raised the score of one class: weights are the spatially
averaged gradients of the class logit with respect to the layer's activations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ModelCardError


def find_layer(network: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called ``name`` (dotted path from ``named_modules``)."""
    modules = dict(network.named_modules())
    if name not in modules:
        raise ModelCardError(f"Grad-CAM target layer {name!r} is not in the network")
    return modules[name]


def grad_cam(
    network: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, class_index: int
) -> torch.Tensor:
    """Grad-CAM of ``class_index`` for a single input ``x`` (1, C, H, W) -> (H, W) in [0, 1].

    The map is upsampled bilinearly to the input size and divided by its maximum (all zeros
    when no location raised the score).
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        store["act"] = out

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = network(x)
            act = store["act"]
            (grad,) = torch.autograd.grad(logits[0, class_index], act)
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True)).detach().float()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    return cam / peak if peak > 0 else cam
