"""The model registry: finds model directories, reads cards, loads each model once.

One :class:`ModelRegistry` per process, created by the composition root and passed to whoever
runs inference; nothing is created at import time. ``get`` loads a model on first use (checksums
verified, warm-up run) and returns the same pipeline afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .blastct import BlastCtPipeline, blast_ct_card, is_blast_ct_dir, smoke_input
from .cards import CARD_FILE, ModelCard, verify_weights
from .device import select_device
from .errors import InferenceError, ModelCardError, ModelNotFoundError
from .fracture import FracturePipeline, load_fracture
from .ich.pipeline import IchPipeline
from .loaders import is_bundle, load_model, read_card
from .stroke import StrokePipeline, load_stroke
from .types import ModelInfo, Prediction, Radiograph, StudyInput, Volume

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    """What workers call: one study in, one Prediction out.

    ``predict_input`` takes the study's named channels (``ct`` for ICH; ``dwi`` + ``adc`` or
    ``b0`` for stroke); ``predict`` is the single-volume form kept for CT pipelines.
    """

    pipeline: str
    card: ModelCard

    @property
    def info(self) -> ModelInfo: ...

    def predict(self, volume: Volume, explain: bool = True) -> Prediction: ...

    def predict_input(self, inp: StudyInput, explain: bool = True, **options: Any
                      ) -> Prediction: ...

    def warmup(self) -> None: ...


class GenericPipeline:
    """A loaded network without a clinical pipeline (e.g. a MONAI bundle): forward pass only."""

    pipeline = "generic"

    def __init__(self, card: ModelCard, network: torch.nn.Module, device: torch.device) -> None:
        self.card, self.network, self.device = card, network, device

    @property
    def info(self) -> ModelInfo:
        return self.card.info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.network(x.to(self.device))
        return out[0] if isinstance(out, tuple | list) else out

    def predict(self, volume: Volume, explain: bool = True) -> Prediction:
        raise ModelCardError(f"{self.card.id}: task 'generic' has no study pipeline")

    def predict_input(self, inp: StudyInput, explain: bool = True, **options: Any
                      ) -> Prediction:
        raise ModelCardError(f"{self.card.id}: task 'generic' has no study pipeline")

    def warmup(self) -> None:
        self.forward(self.smoke_input())

    def smoke_input(self) -> torch.Tensor:
        shape = self.card.input.spatial_shape or (64, 64)
        return torch.zeros((1, self.card.input.channels, *shape))


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: files checked and what the smoke inference produced."""

    model_id: str
    files_checked: int
    smoke_seconds: float
    detail: str


Loader = Callable[[ModelCard, Path, torch.device], Pipeline]


@dataclass(frozen=True)
class TaskHandler:
    """How a card's task becomes a pipeline, and how ``verify`` smoke-tests it (-> detail)."""

    load: Loader
    smoke: Callable[[Any, ModelCard], str]


def _load_ich(card: ModelCard, d: Path, device: torch.device) -> Pipeline:
    return IchPipeline(load_model(d, device))


def _load_ich_segmentation(card: ModelCard, d: Path, device: torch.device) -> Pipeline:
    if card.weights.format == "blast_ct_ensemble":
        verify_weights(card, d)
        return BlastCtPipeline(card, d, device)
    return _load_generic(card, d, device)


def _load_generic(card: ModelCard, d: Path, device: torch.device) -> Pipeline:
    return GenericPipeline(card, load_model(d, device).network, device)


def _smoke_ich(pipe: IchPipeline, card: ModelCard) -> str:
    from .phantoms import PhantomSpec, make_head_ct

    ph = make_head_ct(PhantomSpec(shape=(12, 128, 128), pixel_mm=1.8,
                                  subtypes=("intraparenchymal",), seed=7))
    pred = pipe.predict(ph.volume)
    probs = pred.slice_probabilities
    if probs.shape != (12, len(card.labels)) or not np.isfinite(probs).all():
        raise InferenceError(f"{card.id}: smoke inference gave bad probabilities")
    return "study probabilities " + ", ".join(
        f"{k}={v:.3f}" for k, v in pred.study_probabilities.items())


def _smoke_ich_segmentation(pipe: BlastCtPipeline | GenericPipeline, card: ModelCard) -> str:
    if isinstance(pipe, GenericPipeline):
        return _smoke_generic(pipe, card)
    with torch.inference_mode():
        out, _ = pipe.networks[0](smoke_input().to(pipe.device))
    if not torch.isfinite(out).all():
        raise InferenceError(f"{card.id}: smoke inference gave non-finite output")
    return f"{len(pipe.networks)} members loaded strictly; member 1 output {tuple(out.shape)}"


def _smoke_generic(pipe: GenericPipeline, card: ModelCard) -> str:
    out = pipe.forward(pipe.smoke_input())
    if not torch.isfinite(out.float()).all():
        raise InferenceError(f"{card.id}: smoke inference gave non-finite output")
    return f"output shape {tuple(out.shape)}"


def _smoke_stroke(pipe: StrokePipeline, card: ModelCard) -> str:
    from .phantoms.mr_stroke import StrokeLesionSpec, StrokePhantomSpec, make_stroke_mr

    ph = make_stroke_mr(StrokePhantomSpec(lesions=(StrokeLesionSpec("left", 12.0),), seed=7))
    pred = pipe.predict_input(ph.study_input())
    truth_ml = float(ph.truth.sum()) * ph.dwi.voxel_volume_ml
    got = pred.masks[0].volume_ml
    if not pred.lesions or abs(got - truth_ml) > 0.5 * truth_ml:
        raise InferenceError(f"{card.id}: smoke phantom lesion of {truth_ml:.1f} mL "
                             f"measured {got:.1f} mL")
    return (f"phantom lesion {truth_ml:.1f} mL measured {got:.1f} mL "
            f"({pred.laterality}), {len(pred.lesions)} lesion(s)")


def _smoke_fracture(pipe: FracturePipeline, card: ModelCard) -> str:
    from .evaluation.detection import box_iou
    from .phantoms.radiograph import RadiographSpec, make_radiograph

    ph = make_radiograph(RadiographSpec(body_part="FOREARM", fractures=1, family="heldout",
                                        seed=7, rows=640, cols=512))
    image = Radiograph(array=ph.image, image_id="smoke", body_part=pipe.body_parts[0])
    pred = pipe.predict_images([image], box_threshold=0.0)
    probs = pred.slice_probabilities
    if probs.shape != (1, 1) or not np.isfinite(probs).all():
        raise InferenceError(f"{card.id}: smoke inference gave bad probabilities")
    if any(d.box[2] > 512 or d.box[3] > 640 for d in pred.detections):
        raise InferenceError(f"{card.id}: smoke inference gave a box outside the image")
    top = pred.detections[0] if pred.detections else None
    hit = max((box_iou(top.box, t) for t in ph.boxes), default=0.0) if top else 0.0
    return (f"phantom fracture: image probability {float(probs[0, 0]):.3f}, "
            f"{len(pred.detections)} box(es), top box IoU {hit:.2f} with the truth")


TASKS: dict[str, TaskHandler] = {
    "ich-classification": TaskHandler(_load_ich, _smoke_ich),
    "ich-segmentation": TaskHandler(_load_ich_segmentation, _smoke_ich_segmentation),
    "stroke-segmentation": TaskHandler(load_stroke, _smoke_stroke),
    "fracture-detection": TaskHandler(load_fracture, _smoke_fracture),
    "generic": TaskHandler(_load_generic, _smoke_generic),
}
"""Card task -> how to load and smoke-test it. Adding a pipeline adds one entry here (and the
task's name to :data:`inference.cards.Task`)."""


def _is_model_dir(path: Path) -> bool:
    return (path / CARD_FILE).is_file() or is_bundle(path) or is_blast_ct_dir(path)


class ModelRegistry:
    """Model directories by id. ``paths`` are model directories or folders of them."""

    def __init__(self, paths: Sequence[Path], device: str = "auto", warmup: bool = True,
                 tasks: Mapping[str, TaskHandler] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.tasks: Mapping[str, TaskHandler] = TASKS if tasks is None else tasks
        self.device = select_device(device)
        self.warmup = warmup
        self._dirs: dict[str, Path] | None = None
        self._cards: dict[str, ModelCard] = {}
        self._loaded: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def discover(self) -> dict[str, Path]:
        """id -> directory for every model found (cards read, weights not touched).

        Raises:
            ModelCardError: an invalid card, or two directories with the same id.
        """
        if self._dirs is None:
            dirs: dict[str, Path] = {}
            for root in self.paths:
                if not root.is_dir():
                    log.warning("model path %s does not exist; skipped", root)
                    continue
                cands = [root] if _is_model_dir(root) else sorted(
                    p for p in root.iterdir() if p.is_dir() and _is_model_dir(p))
                for d in cands:
                    card = self._read_card(d)
                    if card.id in dirs and dirs[card.id] != d:
                        raise ModelCardError(f"model id {card.id} in both {dirs[card.id]} and {d}")
                    dirs[card.id] = d
                    self._cards[card.id] = card
            self._dirs = dirs
        return self._dirs

    @staticmethod
    def _read_card(d: Path) -> ModelCard:
        if not (d / CARD_FILE).is_file() and is_blast_ct_dir(d):
            return blast_ct_card(d)
        return read_card(d)

    def ids(self) -> list[str]:
        return sorted(self.discover())

    def directory(self, model_id: str) -> Path:
        try:
            return self.discover()[model_id]
        except KeyError:
            raise ModelNotFoundError(f"no model with id {model_id!r}") from None

    def card(self, model_id: str) -> ModelCard:
        self.directory(model_id)
        return self._cards[model_id]

    def get(self, model_id: str) -> Pipeline:
        """The pipeline for ``model_id``, loaded (and warmed up) on first use only.

        Raises:
            ModelNotFoundError, ModelCardError, ChecksumError, ModelLoadError.
        """
        with self._lock:
            if model_id not in self._loaded:
                t0 = time.perf_counter()
                pipe = self._load(model_id)
                if self.warmup:
                    pipe.warmup()
                log.info("loaded model %s on %s in %.2f s", model_id, self.device,
                         time.perf_counter() - t0)
                self._loaded[model_id] = pipe
            return self._loaded[model_id]

    def _handler(self, card: ModelCard) -> TaskHandler:
        try:
            return self.tasks[card.task]
        except KeyError:
            raise ModelCardError(f"{card.id}: no pipeline for task {card.task!r}") from None

    def _load(self, model_id: str) -> Pipeline:
        d, card = self.directory(model_id), self.card(model_id)
        return self._handler(card).load(card, d, self.device)

    def verify(self, model_id: str) -> VerifyResult:
        """Recompute every checksum, load strictly, and run a smoke inference.

        Raises:
            ChecksumError: a digest differs; other InferenceErrors as for ``get``.
        """
        d, card = self.directory(model_id), self.card(model_id)
        files = verify_weights(card, d)
        pipe = self.get(model_id)
        t0 = time.perf_counter()
        detail = self._handler(card).smoke(pipe, card)
        return VerifyResult(model_id=model_id, files_checked=len(files),
                            smoke_seconds=time.perf_counter() - t0, detail=detail)
