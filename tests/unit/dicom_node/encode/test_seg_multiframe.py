"""SEG on a multi-frame source read in part: an Enhanced MR diffusion image whose b=0 and
b=1000 frames share their plane positions. Each SEG frame must reference the one source frame
its mask was drawn on (Referenced Frame Number), not every frame at that position, and decode
back onto those frames."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicom_node.encode import EncodeContext, MaskFinding, Pipeline, codes, encode_seg
from dicom_node.encode.samples import fixed_clock, sample_algorithm
from dicom_node.synth import SeriesSpec, StudyIdentity
from dicom_node.volume.synth_enhanced import enhanced_series
from tests.unit.dicom_node.volume.diffusion_builders import enhanced_diffusion

SHAPE = (6, 16, 14)
SPACING = (5.0, 1.8, 1.6)


def _ctx(source: Dataset) -> EncodeContext:
    return EncodeContext.for_job(str(source.StudyInstanceUID), Pipeline.STROKE,
                                 sample_algorithm("STROKE"), fixed_clock())


def _finding(frames: np.ndarray) -> MaskFinding:
    return MaskFinding("Infarct", codes.CEREBRAL_INFARCTION, codes.INFARCT_MORPHOLOGY,
                       codes.BRAIN, frames, voxel_volume_mm3=float(np.prod(SPACING)))


def _mask() -> np.ndarray:
    """A blob over slices 1-4, different on each slice."""
    mask = np.zeros(SHAPE, dtype=bool)
    for k in range(1, 5):
        mask[k, 3:3 + 2 * k, 2:9] = True
    return mask


def _source(per_position: int) -> Dataset:
    """b=0, then b=1000 trace, then (with 4 per position) single-direction b=1000 frames."""
    rng = np.random.default_rng(5)
    kinds = [(0.0, "NONE"), (1000.0, "ISOTROPIC"), (1000.0, "DIRECTIONAL"),
             (1000.0, "DIRECTIONAL")][:per_position]
    return enhanced_diffusion(
        [(b, d, rng.integers(0, 2000, size=SHAPE).astype(np.uint16)) for b, d in kinds],
        SPACING, origin=(-12.5, -14.0, -30.0))


def _frame_position(ds: Dataset, frame_number: int) -> list[float]:
    item = ds.PerFrameFunctionalGroupsSequence[frame_number - 1]
    return [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]


@pytest.mark.parametrize(("per_position", "read"), [(2, 2), (4, 2)])
def test_each_seg_frame_references_the_frame_its_mask_was_drawn_on(
        per_position: int, read: int) -> None:
    source = _source(per_position)
    mask = _mask()
    frames = np.zeros((SHAPE[0] * per_position, *SHAPE[1:]), dtype=bool)
    frames[read - 1::per_position] = mask  # the trace frames: 2, 4, ... or 2, 6, ...
    seg = encode_seg([source], [_finding(frames)], _ctx(source))

    assert int(seg.NumberOfFrames) == 4  # the slices with voxels
    for item in seg.PerFrameFunctionalGroupsSequence:
        [derivation] = item.DerivationImageSequence
        [reference] = derivation.SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert reference.SpatialLocationsPreserved == "YES"
        frame = int(reference.ReferencedFrameNumber)
        assert (frame - read) % per_position == 0
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, _frame_position(source, frame), atol=1e-4)

    decoded = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_frame(
        source.SOPInstanceUID, source_frame_numbers=list(range(1, len(frames) + 1)),
        segment_numbers=[1], combine_segments=True, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(decoded.astype(bool), frames)


def test_voxels_on_two_frames_at_one_position_are_refused() -> None:
    source = _source(2)
    frames = np.zeros((SHAPE[0] * 2, *SHAPE[1:]), dtype=bool)
    frames[1::2] = _mask()
    frames[4, 5, 5] = True  # a b=0 frame at the position of b=1000 frame 6, which has voxels
    with pytest.raises(ValueError, match="one plane position"):
        encode_seg([source], [_finding(frames)], _ctx(source))


def test_a_multi_frame_source_with_distinct_positions_is_placed_by_highdicom() -> None:
    volume = np.random.default_rng(2).integers(0, 2000, size=SHAPE).astype(np.uint16)
    source = enhanced_series(volume, SPACING, identity=StudyIdentity(),
                             spec=SeriesSpec(modality="MR", series_description="t2 enhanced"))
    seg = encode_seg([source], [_finding(_mask())], _ctx(source))
    referenced = [int(item.DerivationImageSequence[0].SourceImageSequence[0]
                      .ReferencedFrameNumber) for item in seg.PerFrameFunctionalGroupsSequence]
    assert sorted(referenced) == [2, 3, 4, 5]
