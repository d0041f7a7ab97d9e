"""The fracture pipeline's model side: a centre-heatmap detector (MONAI UNet backbone, no
torchvision) on CR/DX radiographs, boxes mapped back to each image's pixel coordinates."""

from .params import FractureParams
from .pipeline import (
    FRACTURE,
    BodyPartNotSupportedError,
    FracturePipeline,
    Skipped,
    load_fracture,
    select_images,
)

__all__ = ["FRACTURE", "BodyPartNotSupportedError", "FractureParams", "FracturePipeline",
           "Skipped", "load_fracture", "select_images"]
