"""Detection metrics for the fracture pipeline, with confidence intervals, and their runner.

Box metrics follow COCO: a detection is a true positive when its IoU with a not yet matched
truth box of its image reaches the threshold (detections taken highest score first, each
matched to the unmatched truth box it overlaps most); AP is the 101-point interpolated area
under the precision envelope; AP@[.5:.95] the mean over IoU 0.50, 0.55, ... 0.95. FROC gives the
sensitivity (fraction of truth boxes found) at 0.5, 1, 2 and 4 false positives per image.
Image level: AUC of the image probability, sensitivity and specificity at the card threshold.
CIs: percentile bootstrap over images (fixed seed) for AP, FROC and AUC; Wilson intervals for
sensitivity and specificity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..phantoms.radiograph import RadiographFamilyName, make_radiograph, radiograph_cohort
from ..types import Prediction, Radiograph
from .metrics import roc_auc, wilson_interval

Box = tuple[float, float, float, float]
IOU_RANGE = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
FROC_RATES = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class ImageResult:
    """One image: truth boxes, every predicted box with its score, the image probability."""

    image_id: str
    truth: tuple[Box, ...]
    boxes: tuple[Box, ...]
    scores: tuple[float, ...]
    probability: float


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matches(images: Sequence[ImageResult], iou_threshold: float
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, is-true-positive) of every detection, and the number of truth boxes."""
    scores: list[float] = []
    hits: list[bool] = []
    n_truth = 0
    for im in images:
        n_truth += len(im.truth)
        used = [False] * len(im.truth)
        for k in sorted(range(len(im.scores)), key=lambda i: -im.scores[i]):
            best, best_j = iou_threshold, -1
            for j, t in enumerate(im.truth):
                if not used[j]:
                    v = box_iou(im.boxes[k], t)
                    if v >= best:
                        best, best_j = v, j
            if best_j >= 0:
                used[best_j] = True
            scores.append(im.scores[k])
            hits.append(best_j >= 0)
    return np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=bool), n_truth


def average_precision(images: Sequence[ImageResult], iou_threshold: float = 0.5) -> float:
    """COCO 101-point interpolated AP at one IoU threshold; NaN without truth boxes."""
    scores, hits, n_truth = _matches(images, iou_threshold)
    if n_truth == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
    total = 0.0
    for r in np.linspace(0.0, 1.0, 101):
        i = int(np.searchsorted(recall, r, side="left"))
        total += float(envelope[i]) if i < recall.size else 0.0
    return total / 101


def coco_ap(images: Sequence[ImageResult]) -> float:
    """AP averaged over IoU 0.50:0.05:0.95."""
    return float(np.mean([average_precision(images, t) for t in IOU_RANGE]))


def froc(images: Sequence[ImageResult], rates: Sequence[float] = FROC_RATES,
         iou_threshold: float = 0.5) -> dict[float, float]:
    """Sensitivity (truth boxes found / truth boxes) at each average number of false
    positives per image: the best sensitivity of any score threshold within that rate."""
    scores, hits, n_truth = _matches(images, iou_threshold)
    if n_truth == 0 or not images:
        return {r: float("nan") for r in rates}
    order = np.argsort(-scores, kind="mergesort")
    s, h = scores[order], hits[order]
    tp, fp = np.cumsum(h), np.cumsum(~h)
    # Only cut between distinct scores: detections with equal scores go together.
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, dtype=bool)
    sens = np.r_[0.0, tp[last] / n_truth]
    fppi = np.r_[0.0, fp[last] / len(images)]
    return {r: float(sens[fppi <= r].max()) for r in rates}


@dataclass(frozen=True)
class Estimate:
    """A figure and its 95% interval."""

    value: float
    ci: tuple[float, float]

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        def r(v: float) -> float | None:
            return None if math.isnan(v) else round(v, digits)
        return {"value": r(self.value), "ci": [r(self.ci[0]), r(self.ci[1])]}


@dataclass(frozen=True)
class DetectionReport:
    """Every figure the card and ``models evaluate fracture`` report."""

    dataset: str
    model: str
    n_images: int
    n_positive_images: int
    n_truth_boxes: int
    threshold: float
    ap50: Estimate
    ap50_95: Estimate
    froc: dict[float, Estimate]
    image_auc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "model": self.model, "n_images": self.n_images,
            "n_positive_images": self.n_positive_images, "n_truth_boxes": self.n_truth_boxes,
            "image_threshold": self.threshold, "ap50": self.ap50.as_dict(),
            "ap50_95": self.ap50_95.as_dict(),
            "froc": {f"sensitivity_at_{r:g}_fp_per_image": e.as_dict()
                     for r, e in self.froc.items()},
            "image_auc": self.image_auc.as_dict(), "sensitivity": self.sensitivity.as_dict(),
            "specificity": self.specificity.as_dict(), "image_counts": dict(self.counts),
            "note": ("AP COCO 101-point; FROC and AP match boxes at IoU >= 0.5; bootstrap 95% "
                     "CIs over images (AP, FROC, AUC), Wilson (sensitivity, specificity); "
                     "synthetic phantoms only, no real-patient performance is claimed"),
        }


def _pct(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if not math.isnan(x)]
    if len(v) < 10:
        return (float("nan"), float("nan"))
    return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))


def detection_report(images: Sequence[ImageResult], threshold: float, dataset: str = "",
                     model: str = "", n_boot: int = 500, seed: int = 0) -> DetectionReport:
    """All metrics over ``images``; ``threshold`` is the image-level operating point."""
    y = np.array([len(im.truth) > 0 for im in images])
    p = np.array([im.probability for im in images], dtype=np.float64)
    called = p >= threshold
    tp, fn = int((y & called).sum()), int((y & ~called).sum())
    tn, fp = int((~y & ~called).sum()), int((~y & called).sum())
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {"ap50": [], "ap": [], "auc": []}
    boot_froc: dict[float, list[float]] = {r: [] for r in FROC_RATES}
    for _ in range(n_boot):
        idx = rng.integers(0, len(images), size=len(images))
        sample = [images[i] for i in idx]
        boot["ap50"].append(average_precision(sample, 0.5))
        boot["ap"].append(coco_ap(sample))
        boot["auc"].append(roc_auc(y[idx], p[idx]))
        for r, v in froc(sample).items():
            boot_froc[r].append(v)
    fr = froc(images)
    return DetectionReport(
        dataset=dataset, model=model, n_images=len(images), n_positive_images=int(y.sum()),
        n_truth_boxes=sum(len(im.truth) for im in images), threshold=threshold,
        ap50=Estimate(average_precision(images, 0.5), _pct(boot["ap50"])),
        ap50_95=Estimate(coco_ap(images), _pct(boot["ap"])),
        froc={r: Estimate(fr[r], _pct(boot_froc[r])) for r in FROC_RATES},
        image_auc=Estimate(roc_auc(y, p), _pct(boot["auc"])),
        sensitivity=Estimate(tp / (tp + fn) if tp + fn else float("nan"),
                             wilson_interval(tp, tp + fn)),
        specificity=Estimate(tn / (tn + fp) if tn + fp else float("nan"),
                             wilson_interval(tn, tn + fp)),
        counts={"tp": tp, "fp": fp, "tn": tn, "fn": fn})


@dataclass(frozen=True)
class DetectionCase:
    """One labelled radiograph: the input and its truth boxes (its pixel coordinates)."""

    image: Radiograph
    truth: tuple[Box, ...]


class ImagePipeline(Protocol):
    card: Any

    def predict_images(self, images: Sequence[Radiograph], explain: bool = False,
                       **options: Any) -> Prediction: ...


def phantom_detection_cases(n: int, seed: int, family: RadiographFamilyName = "heldout",
                            normal_fraction: float = 0.4) -> Iterator[DetectionCase]:
    """``n`` phantom radiographs of ``family`` (lazily drawn)."""
    for i, spec in enumerate(radiograph_cohort(n, seed, family, normal_fraction)):
        ph = make_radiograph(spec)
        yield DetectionCase(ph.radiograph(f"{family}-{seed}-{i}"), ph.boxes)


def coco_cases(path: Path, body_part: str) -> Iterator[DetectionCase]:
    """Cases from a COCO-style JSON: ``images`` (id, file_name relative to the JSON, optional
    ``body_part``), ``annotations`` (image_id, bbox [x, y, width, height] in pixels). Image
    files are ``.npy`` (2-D arrays) or PNG (8/16-bit grey); every annotation is a fracture.

    Raises:
        ValueError: the JSON lacks ``images`` or an image file cannot be read as 2-D.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    if "images" not in doc:
        raise ValueError(f"{path}: not a COCO-style file (no 'images')")
    boxes: dict[Any, list[Box]] = {}
    for ann in doc.get("annotations", []):
        x, y, w, h = (float(v) for v in ann["bbox"])
        boxes.setdefault(ann["image_id"], []).append((x, y, x + w, y + h))
    for im in doc["images"]:
        array = read_image(path.parent / im["file_name"])
        yield DetectionCase(Radiograph(array=array, image_id=str(im["id"]),
                                       body_part=str(im.get("body_part", body_part)).upper()),
                            tuple(boxes.get(im["id"], [])))


def read_image(path: Path) -> np.ndarray:
    """A 2-D float32 array from ``.npy`` or a greyscale PNG (colour PNGs are averaged)."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        from PIL import Image

        with Image.open(path) as img:
            arr = np.asarray(img)
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"{path.name}: expected a 2-D image, got shape {arr.shape}")
    return arr.astype(np.float32)


def evaluate_detection(pipe: ImagePipeline, cases: Iterable[DetectionCase], dataset: str,
                       model: str, n_boot: int = 500, seed: int = 0) -> DetectionReport:
    """Run ``pipe`` on each case (every box down to the decoder's floor, not only those at the
    box threshold) and report at the card's image threshold."""
    results = []
    for case in cases:
        pred = pipe.predict_images([case.image], box_threshold=0.0)
        dets = [d for d in pred.detections if d.image_id == case.image.image_id]
        results.append(ImageResult(case.image.image_id, case.truth,
                                   tuple(d.box for d in dets), tuple(d.score for d in dets),
                                   float(pred.slice_probabilities[0, 0])))
    threshold = float(pipe.card.labels[0].threshold)
    return detection_report(results, threshold, dataset, model, n_boot, seed)
