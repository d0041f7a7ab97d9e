"""The fracture pipeline's model side: radiographs in, boxes and image probabilities out.

Prediction (issue 11): one class ``fracture`` (SNOMED CT 72704001 "Fracture", from the card);
per image the highest heatmap value is its probability; the study probability is the highest
image probability and its key slice that image; ``detections`` are the boxes at or above the
card's box threshold (``method.params.box_threshold``) on every read image, highest first, in
the pixel coordinates of the image they were found on.

Only images whose body part is one the card lists (``card.body_parts``) are read; the others
are skipped (see :func:`select_images`); when none is left :class:`BodyPartNotSupportedError`
is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cards import ModelCard
from ..device import inference_mode
from ..errors import InputError, ModelCardError, TransientInferenceError
from ..loaders import load_model
from ..types import (
    ClassResult,
    Detection,
    KeySlice,
    ModelInfo,
    Prediction,
    Radiograph,
    StudyInput,
    Timings,
    Volume,
)
from .decode import OUT_CHANNELS, decode, flip_output
from .params import FractureParams, parse_fracture_params
from .preprocess import Working, box_to_input, to_working

log = logging.getLogger(__name__)

FRACTURE = "fracture"
METHOD = "centernet"


class BodyPartNotSupportedError(InputError):
    """No image of the study shows a body part the model reads."""

    reason = "body_part_not_supported"


@dataclass(frozen=True)
class Skipped:
    """An image not read, and why (``body_part_not_supported`` / ``body_part_unknown``)."""

    image_id: str
    body_part: str | None
    reason: str


def select_images(images: Sequence[Radiograph], body_parts: Sequence[str]
                  ) -> tuple[list[Radiograph], list[Skipped]]:
    """Split images into those the model reads and those it skips (with the reason)."""
    allowed = {p.upper() for p in body_parts}
    kept: list[Radiograph] = []
    skipped: list[Skipped] = []
    for img in images:
        part = img.body_part.upper() if img.body_part else None
        if part is None:
            skipped.append(Skipped(img.image_id, None, "body_part_unknown"))
        elif part not in allowed:
            skipped.append(Skipped(img.image_id, part, "body_part_not_supported"))
        else:
            kept.append(img)
    return kept, skipped


class FracturePipeline:
    """A centre-heatmap fracture detector on radiographs (pipeline ``fracture``)."""

    pipeline = "fracture"

    def __init__(self, card: ModelCard, network: torch.nn.Module, params: FractureParams,
                 device: torch.device) -> None:
        try:
            self.label = card.label(FRACTURE)
        except KeyError:
            raise ModelCardError(f"{card.id}: fracture cards need a label {FRACTURE!r}"
                                 ) from None
        if not card.body_parts:
            raise ModelCardError(f"{card.id}: fracture cards must list their body_parts")
        self.card, self.network, self.params, self.device = card, network, params, device

    @property
    def info(self) -> ModelInfo:
        return self.card.info

    @property
    def body_parts(self) -> tuple[str, ...]:
        """DICOM Body Part Examined terms the model reads (from the card)."""
        return self.card.body_parts

    @property
    def box_threshold(self) -> float:
        """Boxes scoring at least this are reported (card ``method.params.box_threshold``)."""
        return self.params.box_threshold

    def warmup(self) -> None:
        size = self.params.working_size
        self._forward(np.zeros((1, size, size), dtype=np.float32))

    def predict(self, volume: Volume, explain: bool = True) -> Prediction:
        """Radiographs are not volumes: always raises InputError (use predict_images)."""
        raise InputError("the fracture pipeline reads radiographs (predict_images)")

    def predict_input(self, inp: StudyInput, explain: bool = True, **options: Any
                      ) -> Prediction:
        """Radiographs are not volumes: always raises InputError (use predict_images)."""
        raise InputError("the fracture pipeline reads radiographs (predict_images)")

    def predict_images(self, images: Sequence[Radiograph], explain: bool = False,
                       **options: Any) -> Prediction:
        """Detect fractures on the images of one study.

        Images of a body part the card does not list (or of unknown body part) are skipped;
        ``slice_ids``/``slice_probabilities`` cover the images read, in input order.
        ``explain`` is accepted for the common interface: the boxes are the explanation.
        Option ``box_threshold`` (float) overrides the card's for this call (evaluation
        reads every decoded box with 0.0).

        Raises:
            BodyPartNotSupportedError: no image shows a body part the model reads.
            InputError: no images, or non-finite pixels.
            TransientInferenceError: the device ran out of memory.
        """
        t0 = time.perf_counter()
        kept, skipped = select_images(images, self.body_parts)
        if not kept:
            if not images:
                raise InputError("no radiographs to read")
            found = sorted({s.body_part or "unknown" for s in skipped})
            raise BodyPartNotSupportedError(
                f"no image of a body part this model reads (found: {', '.join(found)}; "
                f"reads: {', '.join(self.body_parts)})")
        works = [to_working(img.array, self.params.working_size,
                            self.params.normalise_percentiles) for img in kept]
        t1 = time.perf_counter()
        outs = self._forward(np.stack([w.array for w in works]))
        floor = float(options.get("box_threshold", self.params.box_threshold))
        probs, dets = self._decode(kept, works, outs, floor)
        t3 = time.perf_counter()
        timings = Timings(preprocess_s=t1 - t0, inference_s=t3 - t1, explain_s=0.0,
                          total_s=t3 - t0, device=str(self.device))
        log.info("fracture %s: %d image(s) read, %d skipped, %d box(es), %.2f s",
                 self.card.id, len(kept), len(skipped), len(dets), t3 - t0)
        return self._prediction(kept, probs, dets, timings)

    def _forward(self, batch: np.ndarray) -> torch.Tensor:
        """Network output (n, 3, size, size) on the CPU, in chunks of ``batch_images``."""
        outs = []
        step = self.params.batch_images
        try:
            with inference_mode(self.device):
                for i in range(0, batch.shape[0], step):
                    x = torch.from_numpy(batch[i:i + step])[:, None].to(self.device)
                    y = self.network(x).float()
                    if self.params.flip_average:
                        y = (y + flip_output(self.network(x.flip(-1)).float())) / 2
                    outs.append(y.cpu())
        except torch.cuda.OutOfMemoryError as exc:
            raise TransientInferenceError("device out of memory in fracture inference"
                                          ) from exc
        out = torch.cat(outs)
        if out.shape[1] != OUT_CHANNELS:
            raise ModelCardError(f"{self.card.id}: network gives {out.shape[1]} channels, "
                                 f"the fracture head needs {OUT_CHANNELS}")
        return out

    def _decode(self, kept: list[Radiograph], works: list[Working], outs: torch.Tensor,
                floor: float) -> tuple[np.ndarray, list[Detection]]:
        p = self.params
        probs = np.zeros((len(kept), 1), dtype=np.float32)
        dets: list[Detection] = []
        for i, (img, work) in enumerate(zip(kept, works, strict=True)):
            prob, boxes = decode(outs[i], work.extent, p.min_score, p.peak_kernel, p.nms_iou,
                                 p.max_detections, p.size_window)
            probs[i, 0] = prob
            for x0, y0, x1, y1, score in boxes:
                if score < floor:
                    continue
                box = box_to_input((x0, y0, x1, y1), work, img.shape)
                if box is not None:
                    dets.append(Detection(image_id=img.image_id, box=box,
                                          score=min(max(score, 0.0), 1.0), label=FRACTURE))
        dets.sort(key=lambda d: -d.score)
        return probs, dets

    def _prediction(self, kept: list[Radiograph], probs: np.ndarray, dets: list[Detection],
                    timings: Timings) -> Prediction:
        lab = self.label
        k = int(np.argmax(probs[:, 0]))
        prob = float(probs[k, 0])
        result = ClassResult(key=FRACTURE, name=lab.name, code=lab.code.to_code(),
                             probability=prob, threshold=lab.threshold,
                             positive=prob >= lab.threshold,
                             key_slice=KeySlice(index=k, slice_id=kept[k].image_id,
                                                probability=prob))
        return Prediction(pipeline=self.pipeline, model=self.info, classes=(result,),
                          slice_probabilities=probs,
                          slice_ids=tuple(img.image_id for img in kept),
                          timings=timings, detections=tuple(dets))


def load_fracture(card: ModelCard, model_dir: Path, device: torch.device) -> FracturePipeline:
    """The fracture pipeline of a ``fracture-detection`` card (state_dict weights of the
    card's architecture, method ``centernet``).

    Raises:
        ModelCardError: another method, bad parameters, no body parts; ChecksumError,
        ModelLoadError for the weights.
    """
    name = card.method.name if card.method else METHOD
    if name != METHOD:
        raise ModelCardError(f"{card.id}: unknown fracture method {name!r}; known: {METHOD}")
    params = parse_fracture_params(card.method.params if card.method else {}, card.id)
    loaded = load_model(model_dir, device)
    return FracturePipeline(card, loaded.network, params, device)
