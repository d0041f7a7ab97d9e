"""The fracture model's method parameters, read from the card's ``method.params``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ModelCardError


class FractureParams(BaseModel):
    """How images become network input and how the heatmap becomes boxes.

    ``working_size``: the long side of the model's input (pixels); every image is resized so
    its long side has this length (aspect ratio kept) and padded to a square.
    ``box_threshold``: boxes scoring at least this are reported as detections.
    ``min_score``: peaks under this are not decoded at all (evaluation curves start here).
    ``nms_iou``: a box overlapping a higher-scoring one by more than this is dropped.
    ``peak_kernel``: side of the max-pool window that finds heatmap peaks (odd).
    ``max_detections``: at most this many boxes per image.
    ``normalise_percentiles``: (low, high) intensity percentiles mapped to 0 and 1.
    ``size_window``: side of the window (odd) over which the boxes predicted around each peak
    are averaged, weighted by the heatmap (steadier edges than the peak pixel alone; 1 = the
    peak's own box).
    ``flip_average``: average the outputs of the image and its left-right mirror (test-time
    augmentation: steadier peaks and sizes for twice the compute).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    working_size: int = Field(default=384, ge=64, le=2048)
    box_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    min_score: float = Field(default=0.02, ge=0.0, le=1.0)
    nms_iou: float = Field(default=0.3, gt=0.0, le=1.0)
    peak_kernel: int = Field(default=5, ge=1)
    max_detections: int = Field(default=20, ge=1)
    normalise_percentiles: tuple[float, float] = (0.5, 99.8)
    batch_images: int = Field(default=8, ge=1)
    size_window: int = Field(default=5, ge=1)
    flip_average: bool = True


def parse_fracture_params(params: dict[str, Any], model_id: str) -> FractureParams:
    """Validate ``method.params``; ModelCardError names each bad field."""
    try:
        return FractureParams.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ModelCardError(f"{model_id}: fracture method params: {problems}") from exc
