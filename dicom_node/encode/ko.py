"""Key Object Selection document (PS3.3 A.35.4; PS3.16 TID 2010) flagging the key images of
a result, e.g. the slices with the largest haemorrhage, titled (113000, DCM, "Of Interest")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode import codes
from dicom_node.encode.common import concept, device_observer, finish, series_description
from dicom_node.encode.source import character_set, tolerant_first
from dicom_node.encode.text import shape_text
from dicom_node.encode.types import (
    BoxFinding,
    EncodeContext,
    Finding,
    MaskFinding,
    ProbabilityFinding,
)


def key_image_uids(sources: Sequence[Dataset], findings: Sequence[Finding]) -> list[str]:
    """SOP Instance UIDs of the key images of the positive findings, in finding order,
    without repeats: the key images a probability finding names, the image a box lies on, and
    the slice with the largest area of each mask (the whole image for a single source)."""
    chosen: list[str] = []
    for finding in findings:
        if not finding.positive:
            continue
        if isinstance(finding, ProbabilityFinding):
            chosen.extend(finding.key_sop_instance_uids)
        elif isinstance(finding, BoxFinding):
            chosen.append(finding.sop_instance_uid)
        elif isinstance(finding, MaskFinding):
            index = _largest_frame(finding)
            source = sources[index] if len(sources) > 1 else sources[0]
            chosen.append(str(source.SOPInstanceUID))
    return list(dict.fromkeys(chosen))


def _largest_frame(finding: MaskFinding) -> int:
    """0-based index of the mask frame with the largest area."""
    frames = finding.frames
    return int(np.argmax(frames.reshape(frames.shape[0], -1).sum(axis=1)))


def key_frames(sources: Sequence[Dataset], findings: Sequence[Finding]) -> dict[str, int]:
    """SOP Instance UID -> the 1-based frame of a multi-frame source that shows a positive
    mask finding best (its largest area), for the one-multi-frame-source case (an Enhanced MR
    read in part): a viewer opens the key image at that frame instead of frame 1."""
    if len(sources) != 1 or int(sources[0].get("NumberOfFrames", 1) or 1) < 2:
        return {}
    masks = [f for f in findings if isinstance(f, MaskFinding) and f.positive]
    if not masks:
        return {}
    return {str(sources[0].SOPInstanceUID): _largest_frame(masks[0]) + 1}


def encode_kos(
    sources: Sequence[Dataset],
    key_sop_instance_uids: Sequence[str],
    ctx: EncodeContext,
    description: str | None = None,
    frames: Mapping[str, int] | None = None,
) -> hd.ko.KeyObjectSelectionDocument:
    """A KOS referencing the key images (given by SOP Instance UID, all among `sources`),
    selected by the algorithm as device observer; `frames` names the key frame of a
    multi-frame key image (Referenced Frame Number, PS3.3 C.17.3.2.4 Image Reference Macro).

    Raises:
        ValueError: no key image, or a key image that is not among the sources.
    """
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    keys = list(dict.fromkeys(key_sop_instance_uids))
    if not keys:
        raise ValueError("a KOS needs at least one key image")
    if any(uid not in by_uid for uid in keys):
        raise ValueError("key images must be among the source instances")
    original = by_uid[keys[0]]
    selected = tolerant_first([by_uid[uid] for uid in keys])
    charset = character_set(selected[0])
    content = hd.ko.KeyObjectSelection(
        document_title=concept(codes.KEY_OBJECT_OF_INTEREST),
        referenced_objects=selected,
        observer_device_context=device_observer(ctx),
        description=shape_text(
            description or series_description(ctx, "key images", selected[0]), "UT", charset,
            max_characters=1024,
        ),
    )
    when = ctx.clock()
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=selected,
        content=content,
        series_instance_uid=ctx.uids.uid("ko.series"),
        series_number=ctx.series_numbers.kos,
        sop_instance_uid=ctx.uids.uid("ko.sop"),
        instance_number=1,
        manufacturer=ctx.algorithm.manufacturer,
        institution_name=ctx.institution_name,
        series_description=series_description(ctx, "KOS", selected[0]),
        specific_character_set=None,  # written by finish
    )
    _without_image_concept_names(kos)
    _with_key_frames(kos, frames or {})
    finish(kos, ctx, when, selected[0], original)
    return kos


def _with_key_frames(kos: Dataset, frames: Mapping[str, int]) -> None:
    """Adds Referenced Frame Number to the IMAGE items of multi-frame key images."""
    for item in kos.ContentSequence:
        if item.ValueType != "IMAGE":
            continue
        reference = item.ReferencedSOPSequence[0]
        frame = frames.get(str(reference.ReferencedSOPInstanceUID))
        if frame is not None:
            reference.ReferencedFrameNumber = frame


def _without_image_concept_names(kos: Dataset) -> None:
    """Removes the Concept Name Code Sequence that highdicom writes on each IMAGE item: in TID
    2010 (PS3.16) the IMAGE, COMPOSITE and WAVEFORM rows have no concept name (and PS3.3
    C.17.3.2.1 makes it Type 1C only where the template gives one)."""
    for item in kos.ContentSequence:
        if item.ValueType in ("IMAGE", "COMPOSITE", "WAVEFORM") and (
            "ConceptNameCodeSequence" in item
        ):
            del item.ConceptNameCodeSequence
