"""Comprehensive 3D SR with TID 1500 "Imaging Measurement Report" (PS3.3 A.35.13; PS3.16
TID 1500): procedure reported, device observer, one measurement group per finding.

Three kinds of report come out of one function:

- findings, at least one positive: one group per finding (sr_groups);
- findings, none positive ("no acute finding"): the groups, plus a study-level group saying
  the pipeline's target finding is absent;
- "not analysed: reason": a study-level group saying the target is indeterminate, and why;
- "indeterminate - read as usual: reason" (the input failed the model's quality gate, or the
  prediction was unstable): the same group, with those words.

Every report is UNVERIFIED, PRELIMINARY and COMPLETE (what the algorithm was asked to do, it
did); the evidence lists every source instance and the SEG. The SR of an amendment names the
SR it supersedes in its Predecessor Documents Sequence (PS3.3 C.17.2, SR Document General
Module; ``ctx.predecessors``).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from dicom_node.encode import codes
from dicom_node.encode.common import concept, device_observer, finish, series_description
from dicom_node.encode.source import character_set, tolerant_first
from dicom_node.encode.sr_groups import (
    box_group,
    lesion_groups,
    mask_group,
    probability_group,
    statement_group,
)
from dicom_node.encode.text import shape_text
from dicom_node.encode.types import (
    BoxFinding,
    DocumentRef,
    EncodeContext,
    Finding,
    Indeterminate,
    MaskFinding,
    NotAnalysed,
    ProbabilityFinding,
)

NO_ACUTE_FINDING_LABEL = "no-acute-finding"
NOT_ANALYSED_LABEL = "not-analysed"
INDETERMINATE_LABEL = "indeterminate"
INDETERMINATE_TEXT = "Indeterminate - read as usual"
MAX_REASON = 1024
"""Characters of a "not analysed" statement kept in the SR TEXT item (UT allows more; a
reader needs less)."""

_Group = (
    hd.sr.MeasurementsAndQualitativeEvaluations
    | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
)


def _groups(
    ctx: EncodeContext,
    sources: Sequence[Dataset],
    findings: Sequence[Finding],
    seg: Dataset | None,
) -> list[_Group]:
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    groups: list[_Group] = []
    for finding in findings:
        if isinstance(finding, MaskFinding):
            groups.append(mask_group(ctx, finding, seg))
            groups.extend(lesion_groups(ctx, finding, by_uid))
        elif isinstance(finding, ProbabilityFinding):
            groups.append(probability_group(ctx, finding, by_uid))
        elif isinstance(finding, BoxFinding):
            groups.append(box_group(ctx, finding, by_uid))
        else:  # pragma: no cover - the Finding union is closed
            raise TypeError(f"unknown finding type {type(finding).__name__}")
    return groups


def _previous_versions(refs: Sequence[DocumentRef]) -> list[Dataset] | None:
    """The identifiers highdicom needs to write the Predecessor Documents Sequence."""
    if not refs:
        return None
    items = []
    for ref in refs:
        ds = Dataset()
        ds.StudyInstanceUID = ref.study_instance_uid
        ds.SeriesInstanceUID = ref.series_instance_uid
        ds.SOPClassUID = ref.sop_class_uid
        ds.SOPInstanceUID = ref.sop_instance_uid
        items.append(ds)
    return items


def is_negative(findings: Sequence[Finding]) -> bool:
    """True when no finding is positive: the report then says "no acute finding"."""
    return not any(f.positive for f in findings)


def encode_sr(
    sources: Sequence[Dataset],
    findings: Sequence[Finding] | NotAnalysed,
    ctx: EncodeContext,
    seg: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of `findings` on `sources`, or a "not analysed" (or
    "indeterminate") report.

    `seg` is the Segmentation encoded from the mask findings (``encode_seg``); it is required
    when a mask finding has voxels, and joins the evidence. Labels must be unique: each names
    the finding's tracking identifier.

    Raises:
        ValueError: no sources, duplicate labels, a reference outside the sources, a box off
            its image, or a mask with voxels and no SEG segment.
    """
    if not sources:
        raise ValueError("an SR needs at least one source instance")
    original = sources[0]
    sources = tolerant_first(sources)
    charset = character_set(sources[0])
    if isinstance(findings, NotAnalysed):
        indeterminate = isinstance(findings, Indeterminate)
        lead = INDETERMINATE_TEXT if indeterminate else "Not analysed"
        text = shape_text(
            f"{lead}: {findings.reason}", "UT", charset, max_characters=MAX_REASON
        )
        groups: list[_Group] = [statement_group(
            ctx, INDETERMINATE_LABEL if indeterminate else NOT_ANALYSED_LABEL,
            codes.INDETERMINATE, text)]
    else:
        labels = [f.label for f in findings]
        if len(set(labels)) != len(labels):
            raise ValueError("finding labels must be unique within a report")
        groups = _groups(ctx, sources, findings, seg)
        if is_negative(findings):
            groups.append(
                statement_group(ctx, NO_ACUTE_FINDING_LABEL, codes.ABSENT, "No acute finding")
            )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_observer(ctx)),
        procedure_reported=concept(
            codes.procedure_for_modality(str(sources[0].get("Modality", "") or ""))
        ),
        imaging_measurements=groups,
        title=concept(codes.IMAGING_MEASUREMENT_REPORT),
    )
    evidence = [*sources, *([seg] if seg is not None else [])]
    when = ctx.clock()
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=ctx.uids.uid("sr.series"),
        series_number=ctx.series_numbers.sr,
        sop_instance_uid=ctx.uids.uid("sr.sop"),
        instance_number=1,
        manufacturer=ctx.algorithm.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        institution_name=ctx.institution_name,
        series_description=series_description(ctx, "SR", sources[0]),
        manufacturer_model_name=ctx.algorithm.model_name,
        software_versions=ctx.algorithm.version,
        previous_versions=_previous_versions(ctx.predecessors),
        specific_character_set=None,  # written by finish
    )
    finish(sr, ctx, when, sources[0], original)
    return sr
