"""Explainability: Grad-CAM maps and PNG previews."""

from .gradcam import grad_cam
from .png import encode_png, overlay_png

__all__ = ["encode_png", "grad_cam", "overlay_png"]
