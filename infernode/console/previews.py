"""Key-image previews of a study's results: the original image beside the same image with the
AI result drawn on it (SEG masks, SR boxes), rendered by `dicom_node.render`.

What belongs to a result is read from the study's DICOM outputs: the KOS names the key images
(with their frame); the SEG gives the masks drawn on each source frame; the SR's SCOORD regions
give the boxes. Without a KOS, the source frame with the largest SEG mask is the key image.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import sqlalchemy as sa
from pydicom.dataset import Dataset
from sqlalchemy import Engine

from dicom_node import render
from dicom_node.index.tables import instances
from workers.outbox.tables import outputs

log = logging.getLogger(__name__)

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
MAX_PREVIEWS = 4
PALETTE: tuple[render.RGB, ...] = ((255, 64, 64), (64, 220, 64), (64, 160, 255),
                                   (255, 200, 0), (220, 64, 255), (0, 230, 230))
BOX_COLOR: render.RGB = (255, 200, 0)

Key = tuple[str, int | None]
"""A key image: SOP Instance UID and its 1-based frame number (None: a single-frame image)."""


@dataclass
class Result:
    keys: list[Key] = field(default_factory=list)
    masks: dict[Key, list[tuple[np.ndarray, render.RGB]]] = field(default_factory=dict)
    mask_area: dict[Key, int] = field(default_factory=dict)
    boxes: dict[Key, list[render.Box]] = field(default_factory=dict)


def _dicom_outputs(engine: Engine, study_uid: str) -> list[tuple[str, int]]:
    """(path, mtime in ns) of the study's DICOM outputs still on disk."""
    with engine.connect() as conn:
        paths = [r[0] for r in conn.execute(sa.select(outputs.c.path).where(
            outputs.c.study_instance_uid == study_uid, outputs.c.kind == "dicom",
            outputs.c.path.is_not(None)).order_by(outputs.c.id))]
    found = []
    for path in paths:
        try:
            found.append((path, Path(path).stat().st_mtime_ns))
        except OSError:
            continue  # removed by retention meanwhile
    return found


def _walk(items: Any) -> Iterator[Dataset]:
    for item in items or ():
        yield item
        yield from _walk(item.get("ContentSequence"))


def _frame(ref: Dataset) -> int | None:
    value = ref.get("ReferencedFrameNumber")
    if value is None or value == "":
        return None
    return int(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def _read_kos(ds: Dataset, result: Result) -> None:
    for item in _walk(ds.get("ContentSequence")):
        if item.get("ValueType") == "IMAGE" and "ReferencedSOPSequence" in item:
            ref = item.ReferencedSOPSequence[0]
            key = (str(ref.ReferencedSOPInstanceUID), _frame(ref))
            if key not in result.keys:
                result.keys.append(key)


def _group(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The frame's functional group item `sequence`, per-frame before shared (PS3.3
    C.7.6.16), or None."""
    for groups, at in (("PerFrameFunctionalGroupsSequence", index),
                       ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is not None and len(items) > at and sequence in items[at]:
            inner = getattr(items[at], sequence)
            if len(inner):
                found: Dataset = inner[0]
                return found
    return None


def _read_seg(ds: Dataset, result: Result) -> None:
    frames = np.asarray(ds.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    for index in range(frames.shape[0]):
        derivation = _group(ds, index, "DerivationImageSequence")
        if derivation is None or not derivation.get("SourceImageSequence"):
            continue
        source = derivation.SourceImageSequence[0]
        key = (str(source.ReferencedSOPInstanceUID), _frame(source))
        identification = _group(ds, index, "SegmentIdentificationSequence")
        segment = int(identification.ReferencedSegmentNumber) if identification else 1
        mask = frames[index] > 0
        if not mask.any():
            continue
        result.masks.setdefault(key, []).append((mask, PALETTE[(segment - 1) % len(PALETTE)]))
        result.mask_area[key] = result.mask_area.get(key, 0) + int(mask.sum())


def _label(group: Dataset) -> str:
    for item in group.get("ContentSequence") or ():
        name = item.get("ConceptNameCodeSequence")
        if item.get("ValueType") == "CODE" and name and name[0].CodeValue == "121071":
            return str(item.ConceptCodeSequence[0].CodeMeaning)
    return "AI"


def _read_sr(ds: Dataset, result: Result) -> None:
    for group in _walk(ds.get("ContentSequence")):
        if group.get("ValueType") != "CONTAINER":
            continue
        for item in group.get("ContentSequence") or ():
            if item.get("ValueType") != "SCOORD" or item.get("GraphicType") != "POLYLINE":
                continue
            images = [c for c in item.get("ContentSequence") or ()
                      if c.get("ValueType") == "IMAGE"]
            if not images:
                continue
            ref = images[0].ReferencedSOPSequence[0]
            points = np.asarray([float(v) for v in item.GraphicData]).reshape(-1, 2)
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            if x1 <= x0 or y1 <= y0:
                continue
            key = (str(ref.ReferencedSOPInstanceUID), _frame(ref))
            result.boxes.setdefault(key, []).append(
                render.Box(float(x0), float(y0), float(x1), float(y1), _label(group).upper(),
                           BOX_COLOR))


def read_result(paths: list[str]) -> Result:
    """Key images, masks and boxes from a study's DICOM outputs."""
    result = Result()
    for path in paths:
        try:
            head = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError):
            continue
        sop_class = str(head.get("SOPClassUID", ""))
        try:
            if sop_class == KOS_CLASS:
                _read_kos(head, result)
            elif sop_class == SEG_CLASS:
                _read_seg(pydicom.dcmread(path), result)
            elif head.get("Modality") == "SR":
                _read_sr(head, result)
        except (AttributeError, KeyError, IndexError, ValueError) as exc:
            # an output this reader does not understand costs its preview, not the page
            log.warning("preview: output %s not read: %s", Path(path).name, type(exc).__name__)
    if not result.keys:
        ranked = sorted(result.mask_area, key=lambda k: -result.mask_area[k])
        result.keys = ranked[:1] + [k for k in result.boxes if k not in ranked[:1]]
    return result


@dataclass(frozen=True)
class Preview:
    label: str
    original: bytes
    overlay: bytes


class PreviewCache:
    """Rendered previews of the last few studies asked for (the page and its images ask one
    after the other), recomputed when the study's outputs change."""

    def __init__(self, engine: Engine, size: int = 8) -> None:
        self.engine, self.size = engine, size
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], list[Preview]] = OrderedDict()
        self._lock = threading.Lock()

    def previews(self, study_uid: str) -> list[Preview]:
        found = _dicom_outputs(self.engine, study_uid)
        paths = [p for p, _ in found]
        stamp = (study_uid, tuple(f"{p}:{m}" for p, m in found))
        with self._lock:
            if stamp in self._cache:
                self._cache.move_to_end(stamp)
                return self._cache[stamp]
        made = self._render(paths)
        with self._lock:
            self._cache[stamp] = made
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return made

    def _render(self, paths: list[str]) -> list[Preview]:
        result = read_result(paths)
        made = []
        for uid, frame in result.keys[:MAX_PREVIEWS]:
            with self.engine.connect() as conn:
                path = conn.execute(sa.select(instances.c.path).where(
                    instances.c.sop_instance_uid == uid)).scalar()
            if path is None or not Path(path).is_file():
                continue
            ds = pydicom.dcmread(path)
            gray = render.display_image(ds, None if frame is None else frame - 1)
            key = (uid, frame)
            if key not in result.masks and key not in result.boxes and frame is None:
                key = (uid, 1)
            drawn = render.draw_result(gray, masks=result.masks.get(key, ()),
                                       boxes=result.boxes.get(key, ()))
            label = f"{ds.get('Modality', '')} series {ds.get('SeriesNumber', '')} image " \
                    f"{ds.get('InstanceNumber', '')}" + (f" frame {frame}" if frame else "")
            made.append(Preview(label, render.png_bytes(gray), render.png_bytes(drawn)))
        return made
