"""Device choice: CUDA when present (with mixed precision), CPU otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def select_device(prefer: str = "auto") -> torch.device:
    """``auto`` picks ``cuda`` when available; ``cpu``/``cuda``/``cuda:N`` are taken as given.

    Raises:
        ValueError: CUDA was asked for and is not available.
    """
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(prefer)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA requested but no CUDA device is available")
    return device


@contextlib.contextmanager
def inference_mode(device: torch.device, amp: bool = True) -> Iterator[None]:
    """No-grad inference, with float16 autocast on CUDA (AMP) when ``amp``."""
    with torch.inference_mode():
        if device.type == "cuda" and amp:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                yield
        else:
            yield


@contextlib.contextmanager
def autocast(device: torch.device, amp: bool = True) -> Iterator[None]:
    """Autocast on CUDA only; gradients stay enabled (Grad-CAM needs them)."""
    if device.type == "cuda" and amp:
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield
