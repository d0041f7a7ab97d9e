"""TID 1500 measurement groups, one per finding (PS3.16 TID 1410, 1411, 1501).

- mask finding with voxels: TID 1411 volumetric group referencing its SEG segment (121191),
  with the volume in UCUM ml and, when given, the probability;
- mask finding without voxels and probability finding: TID 1501 group with the probability
  (NUM, unit ``1``), presence as a qualitative evaluation and the key images as source images;
- box finding: TID 1410 planar group whose region is a closed 5-point POLYLINE SCOORD;
- study-level statements ("no acute finding", "not analysed: reason"): TID 1501 group on the
  pipeline's target finding with a coded and a text qualitative evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode import codes
from dicom_node.encode.codes import Coded
from dicom_node.encode.common import concept, sr_algorithm_identification, tracking
from dicom_node.encode.types import (
    BoxFinding,
    EncodeContext,
    MaskFinding,
    ProbabilityFinding,
)


def check_closed_polyline(points: np.ndarray, rows: int, columns: int) -> None:
    """Asserts a SCOORD POLYLINE region is closed and lies on its image (PS3.3 C.18.6.1.2:
    (column, row) from the top left corner of the top left pixel, so 0..Columns, 0..Rows).

    highdicom accepts open polylines and points off the image; a viewer then draws an open or
    misplaced region, so the encoder checks it itself.

    Raises:
        ValueError: not 5 points, first != last, or a point outside the image.
    """
    if points.shape != (5, 2):
        raise ValueError("a box region must be a polyline of 5 (column, row) points")
    if not np.array_equal(points[0], points[-1]):
        raise ValueError("a box region must be closed (first point = last point)")
    inside = (
        (points[:, 0] >= 0)
        & (points[:, 0] <= columns)
        & (points[:, 1] >= 0)
        & (points[:, 1] <= rows)
    )
    if not inside.all():
        raise ValueError(f"box region lies outside the {rows} x {columns} image")


def _tracking_identifier(ctx: EncodeContext, label: str) -> hd.sr.TrackingIdentifier:
    tracking_id, tracking_uid = tracking(ctx, label)
    return hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=tracking_id)


def _presence(finding: Coded, present: bool) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(
        name=concept(finding), value=concept(codes.PRESENT if present else codes.ABSENT)
    )


def _probability(value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=concept(codes.PROBABILITY), value=float(value), unit=concept(codes.UNIT_NONE)
    )


def _volume(ml: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=concept(codes.VOLUME), value=ml, unit=concept(codes.UNIT_ML))


def _site(code: Coded, laterality: Coded | None = None) -> list[hd.sr.FindingSite]:
    return [hd.sr.FindingSite(anatomic_location=concept(code),
                              laterality=concept(laterality) if laterality else None)]


def _lesion_measurements(finding: MaskFinding) -> list[hd.sr.Measurement]:
    """Number of lesions and the largest lesion's volume (Volume, derivation Maximum)."""
    if not finding.lesions:
        return []
    return [
        hd.sr.Measurement(name=concept(codes.NUMBER_OF_LESIONS), value=len(finding.lesions),
                          unit=concept(codes.UNIT_LESIONS)),
        hd.sr.Measurement(name=concept(codes.VOLUME),
                          value=max(lesion.volume_ml for lesion in finding.lesions),
                          unit=concept(codes.UNIT_ML), derivation=concept(codes.MAXIMUM)),
    ]


MAX_LESION_GROUPS = 20
"""Lesion groups written per mask finding (largest first); the count still covers all."""


def lesion_groups(
    ctx: EncodeContext, finding: MaskFinding, by_uid: Mapping[str, Dataset]
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One TID 1501 group per lesion of a mask finding: its volume, side, and the image where
    it is largest as source image; in a multi-frame image (Enhanced MR) the reference names
    that frame (Referenced Frame Number, PS3.3 C.17.3.2.4 Image Reference Macro), so a viewer
    opens the lesion's frame, not frame 1."""
    groups = []
    for number, lesion in enumerate(finding.lesions[:MAX_LESION_GROUPS], start=1):
        key = lesion.key_sop_instance_uid or ""
        image = by_uid.get(key)
        source = ([hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=image.SOPClassUID, referenced_sop_instance_uid=key,
            referenced_frame_numbers=_key_frame(image, lesion.key_frame_number))]
            if image is not None else None)
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking_identifier(
                ctx, f"{finding.label[:36]} lesion {number}"),
            finding_type=concept(finding.finding),
            finding_category=concept(finding.property_category),
            algorithm_id=sr_algorithm_identification(ctx),
            finding_sites=_site(finding.finding_site, lesion.laterality),
            measurements=[_volume(lesion.volume_ml)],
            qualitative_evaluations=[_presence(finding.finding, True)],
            source_images=source,
        ))
    return groups


def _key_frame(image: Dataset, frame: int | None) -> list[int] | None:
    """[frame] when `image` is multi-frame and `frame` one of its frames, else None.

    Raises:
        ValueError: `frame` lies outside the image's frames.
    """
    frames = int(image.get("NumberOfFrames", 1) or 1)
    if frame is None or frames < 2:
        return None
    if not 1 <= frame <= frames:
        raise ValueError(f"key frame {frame} is not among the image's {frames} frames")
    return [frame]


def segment_numbers_by_tracking_uid(seg: Dataset) -> dict[str, int]:
    """Tracking UID -> Segment Number of a Segmentation, to link SR groups to segments."""
    return {
        str(item.TrackingUID): int(item.SegmentNumber)
        for item in seg.SegmentSequence
        if "TrackingUID" in item
    }


def mask_group(
    ctx: EncodeContext, finding: MaskFinding, seg: Dataset | None
) -> (
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
):
    """TID 1411 group for a mask with voxels (needs the SEG), TID 1501 group for an empty one.

    Raises:
        ValueError: the finding has voxels but `seg` has no segment with its Tracking UID.
    """
    measurements = [_volume(finding.volume_ml), *_lesion_measurements(finding)]
    if finding.probability is not None:
        measurements.append(_probability(finding.probability))
    common = {
        "tracking_identifier": _tracking_identifier(ctx, finding.label),
        "finding_type": concept(finding.finding),
        "finding_category": concept(finding.property_category),
        "algorithm_id": sr_algorithm_identification(ctx),
        "finding_sites": _site(finding.finding_site, finding.laterality),
        "measurements": measurements,
        "qualitative_evaluations": [_presence(finding.finding, finding.positive)],
    }
    if not finding.positive:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)  # type: ignore[arg-type]
    _, tracking_uid = tracking(ctx, finding.label)
    if seg is None or tracking_uid not in segment_numbers_by_tracking_uid(seg):
        raise ValueError(f"no SEG segment for mask finding {finding.label!r}")
    numbers = segment_numbers_by_tracking_uid(seg)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        referenced_segment=referenced_segment(seg, numbers[tracking_uid]),
        **common,  # type: ignore[arg-type]
    )


def referenced_segment(seg: Dataset, number: int) -> hd.sr.ReferencedSegment:
    """The TID 1411 Referenced Segment (121191) item, with the source images the segment's
    frames derive from (PS3.3 C.7.6.16.2.6 Derivation Image; else the referenced series).

    highdicom's ``ReferencedSegment.from_segmentation`` looks for the Segment Identification
    only per frame; highdicom itself puts it in the shared groups when there is one segment.
    """
    shared = seg.SharedFunctionalGroupsSequence[0]
    images: dict[str, str] = {}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ident = frame if "SegmentIdentificationSequence" in frame else shared
        if int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != number:
            continue
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                images[str(source.ReferencedSOPInstanceUID)] = str(source.ReferencedSOPClassUID)
    if images:
        return hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=number,
            source_images=[
                hd.sr.SourceImageForSegmentation(
                    referenced_sop_class_uid=cls, referenced_sop_instance_uid=uid
                )
                for uid, cls in images.items()
            ],
        )
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(
            seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        ),
    )


def probability_group(
    ctx: EncodeContext, finding: ProbabilityFinding, by_uid: Mapping[str, Dataset]
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group: probability, presence, and the key images as source images.

    Raises:
        ValueError: a key image is not among the source images.
    """
    missing = [u for u in finding.key_sop_instance_uids if u not in by_uid]
    if missing:
        raise ValueError(f"key images of {finding.label!r} are not among the sources")
    images = [
        hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=by_uid[u].SOPClassUID, referenced_sop_instance_uid=u
        )
        for u in finding.key_sop_instance_uids
    ]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_identifier(ctx, finding.label),
        finding_type=concept(finding.finding),
        algorithm_id=sr_algorithm_identification(ctx),
        finding_sites=_site(finding.finding_site),
        measurements=[_probability(finding.probability)],
        qualitative_evaluations=[_presence(finding.finding, finding.positive)],
        source_images=images or None,
    )


def box_group(
    ctx: EncodeContext, finding: BoxFinding, by_uid: Mapping[str, Dataset]
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 group whose region is the box as a closed POLYLINE on its image.

    Raises:
        ValueError: the image is not among the sources, or the box leaves the image.
    """
    image = by_uid.get(finding.sop_instance_uid)
    if image is None:
        raise ValueError(f"image of box finding {finding.label!r} is not among the sources")
    points = finding.box.closed_polyline()
    check_closed_polyline(points, int(image.Rows), int(image.Columns))
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=points,
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=image.SOPClassUID,
            referenced_sop_instance_uid=finding.sop_instance_uid,
        ),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_identifier(ctx, finding.label),
        referenced_region=region,
        finding_type=concept(finding.finding),
        finding_category=concept(codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE),
        algorithm_id=sr_algorithm_identification(ctx),
        finding_sites=_site(finding.finding_site, finding.laterality),
        measurements=[_probability(finding.score)],
        qualitative_evaluations=[_presence(finding.finding, True)],
    )


def statement_group(
    ctx: EncodeContext, label: str, evaluation: Coded, text: str
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group stating something about the pipeline's target finding for the whole
    study: a coded evaluation (Absent, Indeterminate) and the same in words (TEXT row of the
    TID 1501 qualitative evaluations, concept C0034375 UMLS)."""
    target, site = codes.pipeline_target(ctx.pipeline.value)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_identifier(ctx, label),
        finding_type=concept(target),
        algorithm_id=sr_algorithm_identification(ctx),
        finding_sites=_site(site),
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=concept(target), value=concept(evaluation))
        ],
    )
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=concept(codes.QUALITATIVE_EVALUATIONS),
            value=text,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    return group
