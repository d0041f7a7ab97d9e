"""The stroke pipeline's model side: acute infarct core on MR diffusion (DWI + ADC).

Two methods, chosen by the model card: ``adc-threshold`` (ADC < 620 x 10^-6 mm²/s in
DWI-hyperintense brain, no weights) and ``network`` (a MONAI UNet/SegResNet on DWI + ADC).
"""

from .params import NetworkParams, ThresholdParams
from .pipeline import STROKE_METHODS, StrokePipeline, load_stroke

__all__ = ["STROKE_METHODS", "NetworkParams", "StrokePipeline", "ThresholdParams", "load_stroke"]
