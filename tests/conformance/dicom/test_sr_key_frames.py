"""SR lesion groups on a multi-frame source (an Enhanced MR diffusion image read in part): each
lesion's key image reference names the frame where the lesion is largest (Referenced Frame
Number, PS3.3 C.17.3.2.4), so a viewer opens that b=1000 frame and not frame 1. Checked by
dciodvfy and PixelMed's SR validator like every other SR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_node.encode import EncodeContext, MaskFinding, Pipeline, codes, encode_outputs
from dicom_node.encode.samples import fixed_clock, sample_algorithm
from dicom_node.encode.types import Lesion
from tests.e2e.e2e_support import dciodvfy_errors
from tests.support.peers import pixelmed
from tests.support.peers.pixelmed_allowlist import unexplained
from tests.unit.dicom_node.volume.diffusion_builders import enhanced_diffusion

SHAPE = (6, 16, 14)
SPACING = (5.0, 1.8, 1.6)
PER_POSITION = 2  # b=0 then b=1000 at each slice position: frame 2k+2 is slice k at b=1000


def _source() -> Dataset:
    rng = np.random.default_rng(9)
    return enhanced_diffusion(
        [(b, d, rng.integers(0, 2000, size=SHAPE).astype(np.uint16))
         for b, d in ((0.0, "NONE"), (1000.0, "ISOTROPIC"))],
        SPACING, origin=(-12.5, -14.0, -30.0))


def _finding() -> MaskFinding:
    """Two lesions on the b=1000 frames: the larger largest on slice 3, the smaller on slice 1."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 2:8, 2:8] = mask[3, 2:9, 2:9] = mask[4, 3:6, 3:6] = True
    mask[1, 11:14, 10:13] = True
    frames = np.zeros((SHAPE[0] * PER_POSITION, *SHAPE[1:]), dtype=bool)
    frames[1::PER_POSITION] = mask
    voxel = float(np.prod(SPACING))
    source_uid = str(_SOURCE.SOPInstanceUID)
    lesions = (Lesion(volume_ml=(36 + 49 + 9) * voxel / 1000, laterality=codes.LATERALITY["left"],
                      key_sop_instance_uid=source_uid, key_frame_number=2 * 3 + 2),
               Lesion(volume_ml=9 * voxel / 1000, laterality=codes.LATERALITY["right"],
                      key_sop_instance_uid=source_uid, key_frame_number=2 * 1 + 2))
    return MaskFinding("Infarct", codes.CEREBRAL_INFARCTION, codes.INFARCT_MORPHOLOGY,
                       codes.BRAIN, frames, voxel_volume_mm3=voxel,
                       laterality=codes.LATERALITY["bilateral"], lesions=lesions)


_SOURCE = _source()


@pytest.fixture(scope="module")
def sr_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ctx = EncodeContext.for_job(str(_SOURCE.StudyInstanceUID), Pipeline.STROKE,
                                sample_algorithm("STROKE"), fixed_clock())
    outputs = encode_outputs([_SOURCE], [_finding()], ctx)
    assert outputs.sr is not None
    path = tmp_path_factory.mktemp("sr-key-frames") / "sr.dcm"
    outputs.sr.save_as(path, enforce_file_format=True)
    yield path


def _lesion_images(item: Dataset) -> list[Dataset]:
    """IMAGE items of the lesion groups (tracking identifiers ending "lesion N")."""
    found = []
    for child in item.get("ContentSequence", []):
        texts = [str(c.TextValue) for c in child.get("ContentSequence", [])
                 if c.get("ValueType") == "TEXT"]
        if child.get("ValueType") == "CONTAINER" and any(" lesion " in t for t in texts):
            found += [c for c in child.ContentSequence if c.ValueType == "IMAGE"]
        else:
            found += _lesion_images(child)
    return found


def test_each_lesion_group_opens_the_frame_where_the_lesion_is_largest(sr_path: Path) -> None:
    sr = pydicom.dcmread(sr_path)
    images = _lesion_images(sr)
    assert len(images) == 2
    refs = [image.ReferencedSOPSequence[0] for image in images]
    assert {str(r.ReferencedSOPInstanceUID) for r in refs} == {str(_SOURCE.SOPInstanceUID)}
    assert [[int(f) for f in np.atleast_1d(r.ReferencedFrameNumber)] for r in refs] == [[8], [4]]
    for r in refs:  # both are b=1000 frames
        frame = int(r.ReferencedFrameNumber)
        item = _SOURCE.PerFrameFunctionalGroupsSequence[frame - 1]
        assert float(item.MRDiffusionSequence[0].DiffusionBValue) == 1000.0


def test_the_sr_passes_dciodvfy_and_pixelmed(sr_path: Path) -> None:
    assert dciodvfy_errors(sr_path) == []
    report = pixelmed.validate(pixelmed.SR_VALIDATOR, sr_path)
    assert report.completed and unexplained(report) == [], report.errors


def test_a_frame_outside_the_image_is_refused() -> None:
    finding = _finding()
    bad = MaskFinding(finding.label, finding.finding, finding.property_type,
                      finding.finding_site, finding.mask, finding.voxel_volume_mm3,
                      lesions=(Lesion(1.0, None, str(_SOURCE.SOPInstanceUID), 99),))
    ctx = EncodeContext.for_job(str(_SOURCE.StudyInstanceUID), Pipeline.STROKE,
                                sample_algorithm("STROKE"), fixed_clock())
    with pytest.raises(ValueError, match="key frame 99"):
        encode_outputs([_SOURCE], [bad], ctx)
