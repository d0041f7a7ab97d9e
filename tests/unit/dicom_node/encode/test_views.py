"""Overlay series (SC) and GSPS of sample results: what they reference and what they draw."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode import EncodeContext, Pipeline
from dicom_node.encode.gsps import contours
from dicom_node.encode.overlay import magnification, patient_orientation
from dicom_node.encode.samples import fixed_clock, sample_algorithm
from dicom_node.encode.views import encode_views
from tests.conformance.dicom.test_views_validators import _case, encoded


def test_overlay_images_are_burned_in_derived_and_in_the_source_study() -> None:
    sources, views = encoded("ct_ich")
    by_uid = {str(s.SOPInstanceUID): s for s in sources}
    assert len(views.overlay) == 4  # key images of any/SDH, the IPH and IVH largest frames
    series = {str(ds.SeriesInstanceUID) for ds in views.overlay}
    assert len(series) == 1 and series.isdisjoint({str(s.SeriesInstanceUID) for s in sources})
    for ds in views.overlay:
        assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
        assert ds.PatientID == sources[0].PatientID
        assert ds.BurnedInAnnotation == "YES" and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.PhotometricInterpretation == "RGB" and ds.Rows == 512
        assert ds.SeriesDescription.startswith("AI-generated, not verified")
        (ref,) = ds.SourceImageSequence
        assert str(ref.ReferencedSOPInstanceUID) in by_uid
        pixels = ds.pixel_array
        banner = np.all(pixels[:60] == (255, 255, 0), axis=2)
        assert banner.sum() > 500  # the banner's yellow text
        equipment = ds.ContributingEquipmentSequence[-1]
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "Newcode1"


def test_the_mask_outline_and_heatmap_are_drawn_where_the_mask_is() -> None:
    sources, views = encoded("ct_ich")
    key = str(sources[4].SOPInstanceUID)  # IPH on rows 10:22, columns 12:20; a heatmap ramp
    [ds] = [d for d in views.overlay if d.SourceImageSequence[0].ReferencedSOPInstanceUID == key]
    k = magnification(64, 64)
    pixels = ds.pixel_array
    edge = pixels[10 * k + 1, 16 * k]  # the top edge of the IPH box
    assert edge[0] > 200 and edge[1] < 80
    low, high = pixels[40 * k, 5 * k], pixels[63 * k, 60 * k]
    assert high[0] > low[0]  # heatmap 0 there vs 1 here: grey vs warm
    assert "GRAD-CAM" in ds.ImageComments


def test_uids_are_deterministic_and_a_rerun_gives_the_same() -> None:
    sources, findings, _ = _case("mr_stroke")
    ctx = EncodeContext.for_job(str(sources[0].StudyInstanceUID), Pipeline.STROKE,
                                sample_algorithm("InferNode stroke"), fixed_clock())
    images = {str(s.SOPInstanceUID): s for s in sources}
    first = encode_views(sources, findings, images, {}, ctx)
    again = encode_views(sources, findings, images, {}, ctx)
    uids = [d.SOPInstanceUID for d in first.datasets()]
    assert uids == [d.SOPInstanceUID for d in again.datasets()] and len(set(uids)) == len(uids)
    other = EncodeContext.for_job(str(sources[0].StudyInstanceUID), Pipeline.STROKE,
                                  sample_algorithm("InferNode stroke", "2.0"), fixed_clock())
    assert encode_views(sources, findings, images, {}, other).overlay[0].SOPInstanceUID \
        not in uids


def test_gsps_outlines_every_slice_of_the_mask_and_references_them() -> None:
    sources, views = encoded("mr_stroke")
    gsps = views.gsps
    assert gsps is not None and gsps.Modality == "PR"
    referenced = {str(i.ReferencedSOPInstanceUID)
                  for s in gsps.ReferencedSeriesSequence for i in s.ReferencedImageSequence}
    # infarct on slices 2-4 and 7-8
    assert referenced == {str(sources[i].SOPInstanceUID) for i in (2, 3, 4, 7, 8)}
    for annotation in gsps.GraphicAnnotationSequence:
        polylines = [g for g in annotation.GraphicObjectSequence if g.GraphicType == "POLYLINE"]
        assert polylines
        points = np.asarray(polylines[0].GraphicData, dtype=float).reshape(-1, 2)
        assert np.array_equal(points[0], points[-1])
        texts = [t.UnformattedTextValue for t in annotation.TextObjectSequence]
        assert any("InferNode stroke 1.2.0" in t for t in texts)
    assert gsps.SoftcopyVOILUTSequence
    assert gsps.DisplayedAreaSelectionSequence


def test_fracture_boxes_are_rectangles_with_their_score() -> None:
    _, views = encoded("dx_fracture")
    assert views.gsps is not None
    [annotation] = views.gsps.GraphicAnnotationSequence
    texts = [t.UnformattedTextValue for t in annotation.TextObjectSequence]
    assert "fracture-1 0.87" in texts
    rect = np.asarray(annotation.GraphicObjectSequence[0].GraphicData).reshape(-1, 2)
    assert rect.tolist() == [[10, 12.5], [30, 12.5], [30, 40], [10, 40], [10, 12.5]]


def test_contours_follow_pixel_edges_including_holes() -> None:
    mask = np.zeros((8, 8), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False
    loops = contours(mask)
    assert len(loops) == 2
    assert all(len(loop) == 5 and np.array_equal(loop[0], loop[-1]) for loop in loops)
    corners = sorted(sorted(set(map(tuple, loop.tolist()))) for loop in loops)
    assert corners == [[(1, 1), (1, 6), (6, 1), (6, 6)], [(3, 3), (3, 4), (4, 3), (4, 4)]]


def test_patient_orientation_from_the_image_plane() -> None:
    axial = Dataset()
    axial.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    assert patient_orientation(axial) == ("L", "P")
    coronal = Dataset()
    coronal.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    assert patient_orientation(coronal) == ("L", "F")
