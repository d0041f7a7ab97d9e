"""One call for a pipeline: findings (or "not analysed") in, every DICOM result out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_node.encode.ko import encode_kos, key_frames, key_image_uids
from dicom_node.encode.seg import encode_seg, segmented_findings
from dicom_node.encode.sr import encode_sr
from dicom_node.encode.types import EncodeContext, Finding, MaskFinding, NotAnalysed


@dataclass(frozen=True)
class EncodedOutputs:
    """The DICOM results of one job: always an SR; a SEG when a mask has voxels; a KOS when
    there are key images. Nothing is written to disk here."""

    sr: Dataset
    seg: Dataset | None = None
    kos: Dataset | None = None

    def datasets(self) -> list[Dataset]:
        """The objects in the order they should be stored (SR last: it references the SEG)."""
        return [ds for ds in (self.seg, self.kos, self.sr) if ds is not None]


def encode_outputs(
    sources: Sequence[Dataset],
    findings: Sequence[Finding] | NotAnalysed,
    ctx: EncodeContext,
    with_kos: bool = True,
) -> EncodedOutputs:
    """SEG (mask findings with voxels), TID 1500 SR and KOS (key images) of one job.

    Raises:
        ValueError: as ``encode_seg``, ``encode_sr`` and ``encode_kos`` do.
    """
    if isinstance(findings, NotAnalysed):
        return EncodedOutputs(sr=encode_sr(sources, findings, ctx))
    masks = [f for f in findings if isinstance(f, MaskFinding)]
    seg = encode_seg(sources, masks, ctx) if segmented_findings(masks) else None
    sr = encode_sr(sources, findings, ctx, seg=seg)
    keys = key_image_uids(sources, findings) if with_kos else []
    kos = encode_kos(sources, keys, ctx, frames=key_frames(sources, findings)) if keys else None
    return EncodedOutputs(sr=sr, seg=seg, kos=kos)
