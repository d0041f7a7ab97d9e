"""Read-back of the encoded objects with highdicom, and the items of STANDARDS.md that the
validators do not see (procedure reported, closed polylines, volumes, contributing equipment)."""

from __future__ import annotations

from collections.abc import Iterator

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.encode import BoxFinding, MaskFinding, NotAnalysed, ProbabilityFinding

MASK_SCENARIOS = ("ct_ich", "mr_stroke", "dx_mask")
ALL_SCENARIOS = (*MASK_SCENARIOS, "dx_fracture", "ct_negative", "dx_negative", "ct_not_analysed")
LOINC_BY_MODALITY = {"CT": "30799-1", "MR": "30657-1", "DX": "43468-8"}


def walk(items) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from walk(item.get("ContentSequence", []))


def named(items, code_value: str) -> list[Dataset]:
    return [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == code_value]


def children(item: Dataset, code_value: str) -> list[Dataset]:
    return named(item.get("ContentSequence", []), code_value)


def groups(sr: Dataset) -> dict[str, Dataset]:
    """Measurement groups (125007) by Tracking Identifier (112039)."""
    found = named(walk(sr.ContentSequence), "125007")
    return {children(g, "112039")[0].TextValue: g for g in found}


def mask_findings(scenario) -> list[MaskFinding]:
    return [f for f in scenario.findings if isinstance(f, MaskFinding)]


def air_item(ds: Dataset) -> Dataset:
    items = [
        i for i in ds.ContributingEquipmentSequence
        if i.PurposeOfReferenceCodeSequence[0].CodeValue == "Newcode1"
    ]
    assert len(items) == 1
    return items[0]


@pytest.mark.parametrize("name", MASK_SCENARIOS)
def test_seg_decodes_voxel_for_voxel(scenarios, name: str) -> None:
    scenario = scenarios[name]
    seg = hd.seg.segread(scenario.path("seg"))
    present = [f for f in mask_findings(scenario) if f.voxel_count]
    uids = [str(s.SOPInstanceUID) for s in scenario.sources]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=list(range(1, len(present) + 1)),
        combine_segments=False,
    )
    assert pixels.shape[-1] == len(present)
    for index, finding in enumerate(present):
        expected = finding.mask.astype(bool).reshape(pixels.shape[:-1])
        assert np.array_equal(pixels[..., index].astype(bool), expected), finding.label
    # Empty frames are omitted: one frame per (source frame, segment) with any voxel.
    stored = sum(int(np.count_nonzero(f.frames.any(axis=(1, 2)))) for f in present)
    assert int(seg.NumberOfFrames) == stored


@pytest.mark.parametrize("name", ("ct_ich", "mr_stroke"))
def test_seg_frames_sit_on_their_source_images(scenarios, name: str) -> None:
    """Each stored frame's plane position is its source slice's position, and its pixels are
    the mask of that slice: with empty frames omitted, a viewer must place frames by position
    and reference, and both must agree."""
    scenario = scenarios[name]
    seg = dcmread(scenario.path("seg"))
    frames = hd.seg.segread(scenario.path("seg")).pixel_array.reshape(
        int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns)
    )
    index_of = {str(s.SOPInstanceUID): k for k, s in enumerate(scenario.sources)}
    present = [f for f in mask_findings(scenario) if f.voxel_count]
    shared = seg.SharedFunctionalGroupsSequence[0]
    for number, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ident = item if "SegmentIdentificationSequence" in item else shared
        segment = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = index_of[str(source_uid)]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        source_position = [float(v) for v in scenario.sources[k].ImagePositionPatient]
        assert position == pytest.approx(source_position)
        assert np.array_equal(frames[number].astype(bool), present[segment - 1].frames[k])


@pytest.mark.parametrize("name", MASK_SCENARIOS)
def test_segment_descriptions(scenarios, name: str) -> None:
    scenario = scenarios[name]
    seg = dcmread(scenario.path("seg"))
    sr_groups = groups(dcmread(scenario.path("sr")))
    present = [f for f in mask_findings(scenario) if f.voxel_count]
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == list(range(1, len(present) + 1))
    colours = set()
    for segment, finding in zip(seg.SegmentSequence, present, strict=True):
        assert segment.SegmentLabel == finding.label
        category = segment.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodeValue, category.CodingSchemeDesignator) == ("49755003", "SCT")
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        assert (kind.CodeValue, kind.CodingSchemeDesignator) == (finding.property_type.value, "SCT")
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        family = algorithm.AlgorithmFamilyCodeSequence[0]
        assert (family.CodeValue, family.CodingSchemeDesignator) == ("123110", "DCM")
        assert algorithm.AlgorithmName == scenario.ctx.algorithm.name
        assert algorithm.AlgorithmVersion == scenario.ctx.algorithm.version
        # The SR group with this Tracking ID carries the same Tracking UID.
        group = sr_groups[segment.TrackingID]
        assert children(group, "112040")[0].UID == segment.TrackingUID
        colours.add(tuple(segment.RecommendedDisplayCIELabValue))
    assert len(colours) == len(present)
    assert seg.SegmentationType == "BINARY"
    source = scenario.sources[0]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.get("FrameOfReferenceUID") == source.get("FrameOfReferenceUID")


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_every_output_joins_the_source_study_as_a_new_series(scenarios, name: str) -> None:
    scenario = scenarios[name]
    source = scenario.sources[0]
    algorithm = scenario.ctx.algorithm
    series = set()
    for path in scenario.output_paths:
        ds = dcmread(path)
        for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber",
                        "PatientBirthDate", "StudyDate"):
            assert ds[keyword].value == source[keyword].value, (path.name, keyword)
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.SOPInstanceUID not in {s.SOPInstanceUID for s in scenario.sources}
        series.add(ds.SeriesInstanceUID)
        assert ds.SeriesDescription.startswith("AI-generated, not verified")
        air = air_item(ds)
        purpose = air.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
            "99IHE", "Processing Algorithm")
        assert air.Manufacturer == algorithm.manufacturer
        assert air.ManufacturerModelName == algorithm.name
        assert air.SoftwareVersions == algorithm.version
        assert air.DeviceUID == scenario.ctx.uids.device_uid(algorithm.weights_sha256)
    assert len(series) == len(scenario.output_paths), "each output is its own series"


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_sr_document_level_items(scenarios, name: str) -> None:
    scenario = scenarios[name]
    sr = hd.sr.srread(scenario.path("sr"))
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.CompletionFlag == "COMPLETE"
    root = sr.ContentSequence
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    procedure = named(root, "121058")
    assert len(procedure) == 1, "Procedure reported (121058) is required by TID 1500"
    code = procedure[0].ConceptCodeSequence[0]
    assert code.CodingSchemeDesignator == "LN"
    assert code.CodeValue == LOINC_BY_MODALITY[scenario.sources[0].Modality]
    observer_type = named(root, "121005")[0].ConceptCodeSequence[0]
    assert observer_type.CodeValue == "121007"  # Device
    assert named(root, "121012")[0].UID == air_item(sr).DeviceUID
    evidence = {
        i.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    expected = {s.SOPInstanceUID for s in scenario.sources}
    if scenario.outputs.seg is not None:
        expected.add(scenario.outputs.seg.SOPInstanceUID)
    assert evidence == expected
    air = air_item(sr)
    for group in groups(sr).values():
        assert children(group, "111001")[0].TextValue == air.ManufacturerModelName
        assert children(group, "111003")[0].TextValue == air.SoftwareVersions


def _num(group: Dataset, code_value: str) -> tuple[float, str]:
    item = children(group, code_value)[0].MeasuredValueSequence[0]
    return float(item.NumericValue), item.MeasurementUnitsCodeSequence[0].CodeValue


@pytest.mark.parametrize("name", ("ct_ich", "mr_stroke", "dx_mask", "dx_fracture"))
def test_sr_has_one_group_per_finding(scenarios, name: str) -> None:
    scenario = scenarios[name]
    sr = dcmread(scenario.path("sr"))
    by_id = groups(sr)
    lesions = sum(len(f.lesions) for f in scenario.findings if isinstance(f, MaskFinding))
    assert len(by_id) == len(scenario.findings) + lesions
    seg = scenario.outputs.seg
    for finding in scenario.findings:
        group = by_id[f"{scenario.ctx.pipeline.value}:{finding.label}"]
        found = children(group, "121071")[0].ConceptCodeSequence[0]
        assert (found.CodeValue, found.CodingSchemeDesignator) == (
            finding.finding.value, finding.finding.scheme)
        site = children(group, "363698007")[0].ConceptCodeSequence[0]
        assert site.CodeValue == finding.finding_site.value
        presence = children(group, finding.finding.value)[0].ConceptCodeSequence[0]
        assert presence.CodeValue == ("52101004" if finding.positive else "272519000")
        if isinstance(finding, MaskFinding):
            _check_mask_group(scenario, group, finding, seg)
        elif isinstance(finding, ProbabilityFinding):
            assert _num(group, "122157") == (pytest.approx(finding.probability), "1")
            refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                    for i in group.ContentSequence if i.ValueType == "IMAGE"]
            assert refs == list(finding.key_sop_instance_uids)
        elif isinstance(finding, BoxFinding):
            _check_box_group(scenario, group, finding)


def _voxel_volume_ml(source: Dataset) -> float:
    """From the source geometry, not from the finding: row x column spacing x thickness."""
    rows, columns = (float(v) for v in source.PixelSpacing)
    thickness = float(source.get("SliceThickness", 1.0))
    return rows * columns * thickness / 1000.0


def _check_mask_group(scenario, group: Dataset, finding: MaskFinding, seg) -> None:
    volume, unit = _num(group, "118565006")
    assert unit == "ml"
    expected = np.count_nonzero(finding.mask) * _voxel_volume_ml(scenario.sources[0])
    assert volume == pytest.approx(expected, rel=0.01)
    if finding.probability is not None:
        assert _num(group, "122157") == (pytest.approx(finding.probability), "1")
    segment_refs = children(group, "121191")
    if not finding.voxel_count:
        assert segment_refs == []
        return
    ref = segment_refs[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
    segment = seg.SegmentSequence[int(ref.ReferencedSegmentNumber) - 1]
    assert segment.SegmentLabel == finding.label
    sources = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for i in children(group, "121233")}
    with_voxels = {str(scenario.sources[k].SOPInstanceUID)
                   for k in np.flatnonzero(finding.frames.any(axis=(1, 2)))}
    if len(scenario.sources) == 1:
        with_voxels = {str(scenario.sources[0].SOPInstanceUID)}
    assert sources == with_voxels


def _check_box_group(scenario, group: Dataset, finding: BoxFinding) -> None:
    assert _num(group, "122157") == (pytest.approx(finding.score), "1")
    regions = [i for i in group.ContentSequence if i.ValueType == "SCOORD"]
    assert len(regions) == 1
    region = regions[0]
    assert region.GraphicType == "POLYLINE"
    points = np.asarray(region.GraphicData, dtype=float).reshape(-1, 2)
    assert points.shape == (5, 2)
    assert np.array_equal(points[0], points[-1]), "the box must be a closed polyline"
    image_ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert image_ref.ReferencedSOPInstanceUID == finding.sop_instance_uid
    image = next(s for s in scenario.sources if s.SOPInstanceUID == finding.sop_instance_uid)
    assert (points[:, 0] >= 0).all() and (points[:, 0] <= image.Columns).all()
    assert (points[:, 1] >= 0).all() and (points[:, 1] <= image.Rows).all()
    box = finding.box
    assert {tuple(p) for p in points} == {
        (box.column_min, box.row_min), (box.column_max, box.row_min),
        (box.column_max, box.row_max), (box.column_min, box.row_max)}


@pytest.mark.parametrize(
    ("name", "evaluation", "text"),
    [
        ("ct_negative", "272519000", "No acute finding"),
        ("dx_negative", "272519000", "No acute finding"),
        ("ct_not_analysed", "82334004", "Not analysed: no axial non-contrast series"),
    ],
)
def test_negative_and_not_analysed_reports(scenarios, name: str, evaluation: str, text: str):
    scenario = scenarios[name]
    assert scenario.outputs.seg is None and scenario.outputs.kos is None
    by_id = groups(dcmread(scenario.path("sr")))
    label = "not-analysed" if isinstance(scenario.findings, NotAnalysed) else "no-acute-finding"
    statement = by_id[f"{scenario.ctx.pipeline.value}:{label}"]
    target = children(statement, "121071")[0].ConceptCodeSequence[0].CodeValue
    assert target in {"1386000", "72704001"}
    assert children(statement, target)[0].ConceptCodeSequence[0].CodeValue == evaluation
    assert children(statement, "C0034375")[0].TextValue.startswith(text)
    findings = [] if isinstance(scenario.findings, NotAnalysed) else scenario.findings
    assert len(by_id) == len(findings) + 1


def test_kos_flags_the_key_images(scenarios) -> None:
    ct = scenarios["ct_ich"]
    kos = dcmread(ct.path("kos"))
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113000"
    flagged = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for i in walk(kos.ContentSequence) if i.ValueType == "IMAGE"]
    # Largest IPH slice (3), largest IVH slice (5), key slices of "any" (4, 5) and SDH (6).
    assert sorted(flagged) == sorted(str(ct.sources[k].SOPInstanceUID) for k in (3, 4, 5, 6))
    dx = scenarios["dx_fracture"]
    dx_kos = dcmread(dx.path("kos"))
    flagged = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for i in walk(dx_kos.ContentSequence) if i.ValueType == "IMAGE"]
    assert flagged == [dx.sources[0].SOPInstanceUID]


def test_lesions_are_counted_measured_and_sided(scenarios) -> None:
    """Stroke: the infarct group carries the lesion count and the largest lesion's volume
    (Volume with derivation Maximum), each lesion its own group with its side."""
    scenario = scenarios["mr_stroke"]
    [finding] = [f for f in scenario.findings if isinstance(f, MaskFinding)]
    by_id = groups(dcmread(scenario.path("sr")))
    group = by_id[f"stroke:{finding.label}"]
    assert _num(group, "246206008") == (len(finding.lesions), "{lesions}")
    volumes = children(group, "118565006")
    largest = [v for v in volumes if "ContentSequence" in v and any(
        c.ConceptCodeSequence[0].CodeValue == "56851009" for c in v.ContentSequence
        if "ConceptCodeSequence" in c)]
    assert len(largest) == 1
    assert float(largest[0].MeasuredValueSequence[0].NumericValue) == pytest.approx(
        max(lesion.volume_ml for lesion in finding.lesions))
    site = children(group, "363698007")[0]
    assert children(site, "272741003")[0].ConceptCodeSequence[0].CodeValue == "51440002"
    for number, lesion in enumerate(finding.lesions, start=1):
        item = by_id[f"stroke:{finding.label} lesion {number}"]
        assert _num(item, "118565006") == (pytest.approx(lesion.volume_ml), "ml")
        side = children(children(item, "363698007")[0], "272741003")[0]
        assert side.ConceptCodeSequence[0].CodeValue == lesion.laterality.value
        [image] = [i for i in item.ContentSequence if i.ValueType == "IMAGE"]
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
            lesion.key_sop_instance_uid)

