"""Pure encoders of model findings into DICOM results: SEG (PS3.3 A.51), Comprehensive 3D SR
with TID 1500 (PS3.3 A.35.13, PS3.16 TID 1500) and Key Object Selection (PS3.3 A.35.4).

Inputs are plain values (``types``); codes live in one table (``codes``); output UIDs are
derived from the job key (``uids``). No function here reads or writes files.

The encoders, which need highdicom, are imported when first asked for (PEP 562): a process that
only routes or receives (an acceptor process reads the pipelines' definitions, which use the
codes and types) never loads highdicom's tables.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dicom_node.encode.types import (
    AlgorithmInfo,
    Box,
    BoxFinding,
    Clock,
    EncodeContext,
    Finding,
    MaskFinding,
    NotAnalysed,
    Pipeline,
    ProbabilityFinding,
    SeriesNumbers,
)
from dicom_node.encode.uids import UUID_ROOT, UidFactory, derive_uid

if TYPE_CHECKING:
    from dicom_node.encode.ko import encode_kos, key_image_uids
    from dicom_node.encode.outputs import EncodedOutputs, encode_outputs
    from dicom_node.encode.seg import encode_seg
    from dicom_node.encode.sr import encode_sr
    from dicom_node.encode.sr_groups import check_closed_polyline

_ENCODERS = {
    "encode_kos": "ko", "key_image_uids": "ko", "EncodedOutputs": "outputs",
    "encode_outputs": "outputs", "encode_seg": "seg", "encode_sr": "sr",
    "check_closed_polyline": "sr_groups",
}


def __getattr__(name: str) -> Any:
    module = _ENCODERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "UUID_ROOT",
    "AlgorithmInfo",
    "Box",
    "BoxFinding",
    "Clock",
    "EncodeContext",
    "EncodedOutputs",
    "Finding",
    "MaskFinding",
    "NotAnalysed",
    "Pipeline",
    "ProbabilityFinding",
    "SeriesNumbers",
    "UidFactory",
    "check_closed_polyline",
    "derive_uid",
    "encode_kos",
    "encode_outputs",
    "encode_seg",
    "encode_sr",
    "key_image_uids",
]
