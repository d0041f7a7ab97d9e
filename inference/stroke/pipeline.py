"""The stroke study pipeline: DWI + ADC in, infarct mask, lesions and volumes out.

Prediction (issue 10): one class ``infarct`` (SNOMED CT 432504007 "Cerebral infarction", from
the card) whose key slice is the slice of largest lesion area; one union mask ``infarct``; the
connected lesions largest first with their sides; the laterality of all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..cards import ModelCard
from ..errors import InputError, ModelCardError
from ..loaders import load_model
from ..types import (
    ClassResult,
    KeySlice,
    Lesion,
    ModelInfo,
    Prediction,
    SegmentMask,
    StudyInput,
    Timings,
    Volume,
)
from .channels import StrokeChannels, option_b_value, stroke_channels
from .lesions import clean, describe, key_slice_index, laterality
from .network import NetworkSegmenter
from .params import NetworkParams, PostProcess, ThresholdParams, parse_params
from .threshold import ThresholdSegmenter

log = logging.getLogger(__name__)

INFARCT = "infarct"


class Segmenter(Protocol):
    """A stroke method: lesion probability on the input grid (0/1 for rule-based methods)."""

    @property
    def params(self) -> PostProcess: ...

    def probability(self, ch: StrokeChannels) -> np.ndarray: ...

    def warmup(self) -> None: ...


class StrokePipeline:
    """One stroke model (either method) as the study pipeline ``stroke``."""

    pipeline = "stroke"

    def __init__(self, card: ModelCard, segmenter: Segmenter, device: torch.device) -> None:
        try:
            self.label = card.label(INFARCT)
        except KeyError:
            raise ModelCardError(f"{card.id}: stroke cards need a label {INFARCT!r}") from None
        self.card, self.segmenter, self.device = card, segmenter, device

    @property
    def info(self) -> ModelInfo:
        return self.card.info

    def warmup(self) -> None:
        self.segmenter.warmup()

    def predict(self, volume: Volume, explain: bool = True) -> Prediction:
        """Stroke needs DWI and ADC: always raises InputError (use :meth:`predict_input`)."""
        raise InputError("the stroke pipeline needs DWI and ADC channels (predict_input)")

    def predict_input(self, inp: StudyInput, explain: bool = True, **options: Any
                      ) -> Prediction:
        """Segment the acute infarct core of one MR diffusion study.

        ``inp`` holds ``dwi`` and ``adc`` (or ``b0``, the ADC then computed with option
        ``b_value``, default 1000 s/mm²). ``explain`` is accepted for the common interface; the
        mask is the explanation.

        Raises:
            InputError: missing channels, an ADC map in an unknown unit, no brain.
            TransientInferenceError: the device ran out of memory.
        """
        t0 = time.perf_counter()
        ch = stroke_channels(inp, option_b_value(options))
        t1 = time.perf_counter()
        prob = self.segmenter.probability(ch)
        t2 = time.perf_counter()
        p = self.segmenter.params
        mask = clean(prob >= self.label.threshold, ch.brain, ch.grid, p)
        lesions = describe(mask, ch.grid, ch.midline_x, p)
        t3 = time.perf_counter()
        timings = Timings(preprocess_s=t1 - t0, inference_s=t2 - t1, explain_s=0.0,
                          total_s=t3 - t0, device=str(self.device))
        pred = self._prediction(ch, prob, mask.astype(np.uint8), lesions, timings)
        log.info("stroke %s: %d lesion(s), %.2f mL, ADC %s, %.2f s", self.card.id, len(lesions),
                 pred.masks[0].volume_ml, "computed" if ch.adc_computed else "given", t3 - t0)
        return pred

    def _prediction(self, ch: StrokeChannels, prob: np.ndarray, mask: np.ndarray,
                    lesions: tuple[Lesion, ...], timings: Timings) -> Prediction:
        grid, lab = ch.grid, self.label
        count = int(mask.sum())
        if count:
            probability = float(prob[mask.astype(bool)].max())
        else:
            # Components under the minimum volume are not findings: without a lesion the study
            # probability stays below the threshold.
            inside = prob[ch.brain] if ch.brain.any() else prob
            probability = min(float(inside.max()) if inside.size else 0.0,
                              float(np.nextafter(lab.threshold, 0.0)))
        k = key_slice_index(mask)
        key = None if k is None else KeySlice(index=k, slice_id=grid.slice_id(k),
                                              probability=float(prob[k][mask[k] > 0].max()))
        code = lab.code.to_code()
        result = ClassResult(key=INFARCT, name=lab.name, code=code, probability=probability,
                             threshold=lab.threshold, positive=count > 0, key_slice=key)
        seg = SegmentMask(key=INFARCT, name=lab.name, code=code, mask=mask,
                          volume_ml=count * grid.voxel_volume_ml, voxel_count=count)
        return Prediction(
            pipeline=self.pipeline, model=self.info, classes=(result,),
            slice_probabilities=np.zeros((0, 1), dtype=np.float32),
            slice_ids=tuple(grid.slice_id(i) for i in range(grid.array.shape[0])),
            masks=(seg,), timings=timings, lesions=lesions, laterality=laterality(lesions))


def _threshold(card: ModelCard, model_dir: Path, device: torch.device) -> Segmenter:
    params = card.method.params if card.method else {}
    return ThresholdSegmenter(parse_params(ThresholdParams, params, card.id))


def _network(card: ModelCard, model_dir: Path, device: torch.device) -> Segmenter:
    params = parse_params(NetworkParams, card.method.params if card.method else {}, card.id)
    loaded = load_model(model_dir, device)
    return NetworkSegmenter(loaded.network, params, device)


STROKE_METHODS: dict[str, Callable[[ModelCard, Path, torch.device], Segmenter]] = {
    "adc-threshold": _threshold,
    "network": _network,
}
"""Card ``method.name`` -> segmenter factory; a card without a method is a ``network``."""


def load_stroke(card: ModelCard, model_dir: Path, device: torch.device) -> StrokePipeline:
    """The stroke pipeline of a ``stroke-segmentation`` card.

    Raises:
        ModelCardError: unknown method or bad parameters; ChecksumError, ModelLoadError for
        network weights.
    """
    name = card.method.name if card.method else "network"
    try:
        factory = STROKE_METHODS[name]
    except KeyError:
        known = ", ".join(sorted(STROKE_METHODS))
        raise ModelCardError(f"{card.id}: unknown stroke method {name!r}; known: {known}"
                             ) from None
    return StrokePipeline(card, factory(card, model_dir, device), device)
