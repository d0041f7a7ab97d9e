"""What every viewer shows: a job's findings as an overlay series (burned-in Secondary Capture
images of the key images) and a Grayscale Softcopy Presentation State over the original
images, planned the same way for every pipeline from the encoders' plain finding types.

- overlay: the key images (as the KOS chooses them, plus each lesion's key image and every
  image with a saliency map), each with the outlines of the masks on it, its boxes with scores
  and its saliency heatmap;
- GSPS: every image (or frame) a mask touches, with its outline; every box; the key images of
  probability findings, with text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode.gsps import Annotation, encode_gsps
from dicom_node.encode.ko import key_image_uids
from dicom_node.encode.overlay import OverlayImage, encode_overlay
from dicom_node.encode.types import (
    BoxFinding,
    EncodeContext,
    Finding,
    MaskFinding,
    ProbabilityFinding,
)
from dicom_node.render import RGB, Box

MAX_OVERLAY_IMAGES = 12
"""An overlay series shows the key images, not the study: at most this many."""

_PALETTE: tuple[RGB, ...] = ((255, 48, 48), (48, 200, 255), (255, 200, 0), (200, 80, 255),
                             (80, 255, 120), (255, 128, 0))


@dataclass(frozen=True)
class Views:
    """The overlay images (one SC per key image) and the presentation state, or neither."""

    overlay: list[Dataset] = field(default_factory=list)
    gsps: Dataset | None = None

    def datasets(self) -> list[Dataset]:
        return [*self.overlay, *([self.gsps] if self.gsps is not None else [])]


@dataclass(frozen=True)
class _Slot:
    """One source image, or one frame of a multi-frame source."""

    uid: str
    index: int
    frame: int | None


def _slots(sources: Sequence[Dataset], depth: int) -> list[_Slot]:
    """Where mask frame k lies: source k, or frame k of the one multi-frame source."""
    if len(sources) == 1 and int(sources[0].get("NumberOfFrames", 1) or 1) > 1:
        return [_Slot(str(sources[0].SOPInstanceUID), 0, k) for k in range(depth)]
    return [_Slot(str(s.SOPInstanceUID), k, None) for k, s in enumerate(sources[:depth])]


def _color(finding: MaskFinding, position: int) -> RGB:
    return finding.display_rgb or _PALETTE[position % len(_PALETTE)]


def view_uids(sources: Sequence[Dataset], findings: Sequence[Finding],
              heatmaps: Mapping[str, np.ndarray]) -> list[str]:
    """SOP Instance UIDs of the images the overlay series shows, in order, at most
    `MAX_OVERLAY_IMAGES` (the caller reads their pixels)."""
    chosen = list(key_image_uids(sources, findings))
    for f in findings:
        if isinstance(f, MaskFinding) and f.positive:
            chosen.extend(x.key_sop_instance_uid for x in f.lesions if x.key_sop_instance_uid)
    known = {str(s.SOPInstanceUID) for s in sources}
    chosen.extend(uid for uid in heatmaps if uid in known)
    return list(dict.fromkeys(chosen))[:MAX_OVERLAY_IMAGES]


def encode_views(sources: Sequence[Dataset], findings: Sequence[Finding],
                 images: Mapping[str, Dataset], heatmaps: Mapping[str, np.ndarray],
                 ctx: EncodeContext) -> Views:
    """The overlay series and GSPS of a job's positive findings (none for a negative result).

    ``sources`` are the source headers (mask frame k belongs to ``sources[k]``, or to frame k
    of a single multi-frame source); ``images`` the overlay's key images with their pixel data
    by SOP Instance UID (those of `view_uids`; others are left out of the overlay);
    ``heatmaps`` a saliency map in [0, 1] on an image's pixel grid, by SOP Instance UID.

    Raises:
        ValueError: as `encode_overlay` and `encode_gsps`.
    """
    positive = [f for f in findings if f.positive]
    if not positive or not sources:
        return Views()
    overlay_images = _overlay_images(sources, positive, images, heatmaps)
    annotations = _annotations(sources, positive, images)
    return Views(
        overlay=encode_overlay(overlay_images, ctx) if overlay_images else [],
        gsps=encode_gsps(annotations, ctx) if annotations else None,
    )


def _mask_frames(sources: Sequence[Dataset], findings: Sequence[Finding]
                 ) -> dict[tuple[str, int | None], list[tuple[np.ndarray, RGB, str]]]:
    """(image uid, frame) -> the masks with voxels there, with colour and label text."""
    out: dict[tuple[str, int | None], list[tuple[np.ndarray, RGB, str]]] = {}
    masks = [f for f in findings if isinstance(f, MaskFinding)]
    for position, finding in enumerate(masks):
        frames = finding.frames
        text = f"{finding.label} {finding.volume_ml:.1f} ML"
        for slot in _slots(sources, frames.shape[0]):
            plane = frames[slot.index if slot.frame is None else slot.frame]
            if plane.any():
                out.setdefault((slot.uid, slot.frame), []).append(
                    (plane, _color(finding, position), text))
    return out


def _texts_for(uid: str, findings: Sequence[Finding]) -> list[str]:
    return [f"{f.label} P={f.probability:.2f}" for f in findings
            if isinstance(f, ProbabilityFinding) and uid in f.key_sop_instance_uids]


def _boxes_for(uid: str, findings: Sequence[Finding]) -> list[BoxFinding]:
    return [f for f in findings if isinstance(f, BoxFinding) and f.sop_instance_uid == uid]


def _overlay_images(sources: Sequence[Dataset], findings: Sequence[Finding],
                    images: Mapping[str, Dataset], heatmaps: Mapping[str, np.ndarray]
                    ) -> list[OverlayImage]:
    by_mask = _mask_frames(sources, findings)
    out = []
    for uid in view_uids(sources, findings, heatmaps):
        image = images.get(uid)
        if image is None:
            continue
        frames = [k for (u, k) in by_mask if u == uid]
        frame = max(frames, key=lambda k: sum(int(m.sum()) for m, _, _ in by_mask[(uid, k)]),
                    default=None) if frames else None
        on_image = by_mask.get((uid, frame), [])
        shape = (int(image.Rows), int(image.Columns))
        heat = heatmaps.get(uid)
        captions = [*_texts_for(uid, findings), *(t for _, _, t in on_image)]
        if heat is not None and heat.shape == shape:
            captions.append("HEATMAP: GRAD-CAM")
        else:
            heat = None
        boxes = tuple(Box(b.box.column_min, b.box.row_min, b.box.column_max, b.box.row_max,
                          f"{b.label} {b.score:.2f}", (255, 160, 0))
                      for b in _boxes_for(uid, findings))
        out.append(OverlayImage(
            source=image, caption="; ".join(dict.fromkeys(captions)) or "AI RESULT",
            frame=frame, masks=tuple((m, c) for m, c, _ in on_image), boxes=boxes,
            heatmap=heat))
    return out


def _annotations(sources: Sequence[Dataset], findings: Sequence[Finding],
                 images: Mapping[str, Dataset]) -> list[Annotation]:
    by_uid = {str(s.SOPInstanceUID): s for s in sources}
    by_mask = _mask_frames(sources, findings)
    keys: list[tuple[str, int | None]] = list(by_mask)
    for f in findings:
        if isinstance(f, BoxFinding):
            keys.append((f.sop_instance_uid, None))
        elif isinstance(f, ProbabilityFinding):
            keys.extend((uid, None) for uid in f.key_sop_instance_uids)
    out = []
    for uid, frame in dict.fromkeys(keys):
        source = by_uid.get(uid)
        if source is None:
            continue
        on_image = by_mask.get((uid, frame), [])
        boxes = tuple(((b.box.column_min, b.box.row_min, b.box.column_max, b.box.row_max),
                       f"{b.label} {b.score:.2f}") for b in _boxes_for(uid, findings))
        texts = tuple(dict.fromkeys([*_texts_for(uid, findings), *(t for _, _, t in on_image)]))
        out.append(Annotation(source=source, frame=frame,
                              masks=tuple(m for m, _, _ in on_image), boxes=boxes,
                              texts=texts, pixels=images.get(uid)))
    return out
