"""The SR's Predecessor Documents Sequence (PS3.3 C.17.2): written from the context's
predecessors, absent without them, and only on the SR."""

from __future__ import annotations

import pytest

from dicom_node.encode import EncodeContext, Pipeline, encode_outputs
from dicom_node.encode.samples import ct_head_case, fixed_clock, sample_algorithm
from dicom_node.encode.types import DocumentRef

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def _outputs(amendment: int, predecessors: tuple[DocumentRef, ...]):
    case = ct_head_case()
    ctx = EncodeContext.for_job(str(case.sources[0].StudyInstanceUID), Pipeline.ICH,
                                sample_algorithm("ICH", "1.0.0", b"w"), fixed_clock(),
                                amendment=amendment, predecessors=predecessors)
    return encode_outputs(case.sources, [*case.masks, *case.probabilities], ctx)


def test_the_sr_names_its_predecessor_and_the_seg_and_kos_do_not() -> None:
    earlier = DocumentRef("1.2.826.0.1.1", "1.2.826.0.1.1.2", SR_CLASS, "1.2.826.0.1.1.2.3")
    out = _outputs(1, (earlier,))
    [study] = out.sr.PredecessorDocumentsSequence
    [series] = study.ReferencedSeriesSequence
    [item] = series.ReferencedSOPSequence
    assert (study.StudyInstanceUID, series.SeriesInstanceUID, item.ReferencedSOPClassUID,
            item.ReferencedSOPInstanceUID) == ("1.2.826.0.1.1", "1.2.826.0.1.1.2", SR_CLASS,
                                               "1.2.826.0.1.1.2.3")
    assert out.seg is not None and out.kos is not None
    assert "PredecessorDocumentsSequence" not in out.seg
    assert "PredecessorDocumentsSequence" not in out.kos


def test_a_first_result_has_no_predecessor() -> None:
    assert "PredecessorDocumentsSequence" not in _outputs(0, ()).sr


@pytest.mark.parametrize("bad", ["", "1.02.3", "1.2.x", "1." + "1" * 64])
def test_a_document_reference_needs_valid_uids(bad: str) -> None:
    with pytest.raises(ValueError, match="sop_instance_uid"):
        DocumentRef("1.2.3", "1.2.3.4", SR_CLASS, bad)
