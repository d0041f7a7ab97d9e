"""Inputs are valid on construction, and encoders refuse what would mislead a viewer."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from dicom_node.encode import (
    AlgorithmInfo,
    Box,
    BoxFinding,
    EncodeContext,
    MaskFinding,
    NotAnalysed,
    Pipeline,
    ProbabilityFinding,
    check_closed_polyline,
    codes,
    encode_kos,
    encode_seg,
    encode_sr,
)
from dicom_node.encode.samples import (
    INTRAPARENCHYMAL_HEMORRHAGE,
    SUBARACHNOID_HEMORRHAGE,
    ct_head_case,
    fixed_clock,
    radiograph_case,
    sample_algorithm,
)


def _ctx(sources, pipeline=Pipeline.ICH, clock=None) -> EncodeContext:
    return EncodeContext.for_job(str(sources[0].StudyInstanceUID), pipeline,
                                 sample_algorithm("ICH"), clock or fixed_clock())


def test_algorithm_info_checks_digest_and_lengths() -> None:
    with pytest.raises(ValueError):
        AlgorithmInfo("n", "1", "m", "model", "not-a-digest")
    with pytest.raises(ValueError):
        AlgorithmInfo("n" * 65, "1", "m", "model", "a" * 64)


def test_finding_values_are_checked() -> None:
    with pytest.raises(ValueError):
        ProbabilityFinding("SAH", SUBARACHNOID_HEMORRHAGE, codes.BRAIN, 1.2, 0.5, True)
    with pytest.raises(ValueError):
        Box(10, 10, 5, 20)
    with pytest.raises(ValueError):
        MaskFinding("x", codes.CEREBRAL_INFARCTION, codes.INFARCT_MORPHOLOGY, codes.BRAIN,
                    np.full((2, 4, 4), 2), 1.0)
    with pytest.raises(ValueError):
        NotAnalysed("   ")


def test_volume_is_voxels_times_voxel_volume() -> None:
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[1, :2, :3] = True
    finding = MaskFinding("x", codes.CEREBRAL_INFARCTION, codes.INFARCT_MORPHOLOGY,
                          codes.BRAIN, mask, 2.5)
    assert finding.volume_ml == pytest.approx(6 * 2.5 / 1000)


def test_polyline_check() -> None:
    closed = Box(0, 0, 80, 96).closed_polyline()
    check_closed_polyline(closed, rows=96, columns=80)  # touching the edges is inside
    open_polyline = np.vstack([closed[:4], [[1.0, 1.0]]])
    with pytest.raises(ValueError, match="closed"):
        check_closed_polyline(open_polyline, rows=96, columns=80)
    with pytest.raises(ValueError, match="5"):
        check_closed_polyline(closed[:4], rows=96, columns=80)
    with pytest.raises(ValueError, match="outside"):
        check_closed_polyline(closed, rows=95, columns=80)


def test_box_off_its_image_is_refused() -> None:
    case = radiograph_case(rows=96, columns=80)
    uid = str(case.sources[0].SOPInstanceUID)
    wide = BoxFinding("f", uid, Box(60, 70, 81, 90), 0.5, codes.BONE)
    with pytest.raises(ValueError, match="outside"):
        encode_sr(case.sources, [wide], _ctx(case.sources, Pipeline.FRACTURE))
    elsewhere = BoxFinding("f", "1.2.3.4", Box(1, 1, 2, 2), 0.5, codes.BONE)
    with pytest.raises(ValueError, match="not among the sources"):
        encode_sr(case.sources, [elsewhere], _ctx(case.sources, Pipeline.FRACTURE))


def test_seg_refuses_misaligned_or_empty_masks() -> None:
    case = ct_head_case()
    ctx = _ctx(case.sources)
    short = MaskFinding("IPH", INTRAPARENCHYMAL_HEMORRHAGE, codes.HEMORRHAGE_MORPHOLOGY,
                        codes.BRAIN, case.masks[0].mask[:-1], 1.0)
    with pytest.raises(ValueError, match="shape"):
        encode_seg(case.sources, [short], ctx)
    with pytest.raises(ValueError, match="no mask finding"):
        encode_seg(case.sources, [case.masks[2]], ctx)  # EDH: no voxel


def test_sr_refuses_a_mask_without_its_segment_and_duplicate_labels() -> None:
    case = ct_head_case()
    ctx = _ctx(case.sources)
    with pytest.raises(ValueError, match="no SEG segment"):
        encode_sr(case.sources, case.masks, ctx, seg=None)
    twice = [case.probabilities[0], case.probabilities[0]]
    with pytest.raises(ValueError, match="unique"):
        encode_sr(case.sources, twice, ctx)


def test_key_images_must_be_sources() -> None:
    case = ct_head_case()
    ctx = _ctx(case.sources)
    stray = ProbabilityFinding("any", codes.INTRACRANIAL_HEMORRHAGE, codes.BRAIN, 0.9, 0.5,
                               True, ("1.2.3.4",))
    with pytest.raises(ValueError, match="key images"):
        encode_sr(case.sources, [stray], ctx)
    with pytest.raises(ValueError):
        encode_kos(case.sources, ["1.2.3.4"], ctx)
    with pytest.raises(ValueError):
        encode_kos(case.sources, [], ctx)


def test_dates_come_from_the_injected_clock() -> None:
    case = ct_head_case()
    when = datetime(2031, 7, 8, 9, 10, 11, tzinfo=UTC)
    sr = encode_sr(case.sources, NotAnalysed("unreadable pixel data"),
                   _ctx(case.sources, clock=fixed_clock(when)))
    for keyword in ("InstanceCreationDate", "ContentDate", "SeriesDate"):
        assert str(sr[keyword].value) == "20310708"
    assert str(sr.ContentTime) == "091011"
    assert all(str(i.ContributionDateTime).startswith("20310708091011")
               for i in sr.ContributingEquipmentSequence if "Manufacturer" in i
               and i.Manufacturer in ("highdicom", "InferNode"))


def test_every_code_names_its_source_and_procedures_map_by_modality() -> None:
    table = [v for v in vars(codes).values() if isinstance(v, codes.Coded)]
    assert len(table) > 30
    assert all(c.source for c in table)
    assert codes.procedure_for_modality("ct").value == "30799-1"
    assert codes.procedure_for_modality("MR").value == "30657-1"
    assert codes.procedure_for_modality("CR").value == codes.procedure_for_modality("DX").value
    assert codes.procedure_for_modality("US").value == "18748-4"
