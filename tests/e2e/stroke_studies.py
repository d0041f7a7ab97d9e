"""MR stroke studies as scanners send them, built from the project's MR stroke phantoms.

Each study is a DWI series (b=0 and b=1000 images, the b-value where one vendor keeps it), and,
unless the case says otherwise, the scanner's ADC map as its own series (DERIVED\\PRIMARY\\
DIFFUSION\\ADC), on the DWI grid or on another one. The phantom's truth mask and lesion volumes
come along, so a test can check the node's result against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.synth import StudyIdentity, write_series
from inference.phantoms.mr_stroke import (
    StrokeLesionSpec,
    StrokePhantom,
    StrokePhantomSpec,
    make_stroke_mr,
)
from inference.types import Volume
from infernode.samples import BPlacement, b_in_comments, diffusion_series


def siemens(ds: Dataset, b: float) -> None:
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", int(b))
    ds.Manufacturer = "SIEMENS"


def ge(ds: Dataset, b: float) -> None:
    # GE adds 10^9 to the b-value in (0043,1039) on many releases
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(
        0x39, "IS", [str(int(b) + 1_000_000_000), "8", "0", "0"])
    ds.Manufacturer = "GE MEDICAL SYSTEMS"


def philips(ds: Dataset, b: float) -> None:
    ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", float(b))
    ds.Manufacturer = "Philips Medical Systems"


@dataclass(frozen=True)
class StrokeCase:
    name: str
    lesions: tuple[StrokeLesionSpec, ...]
    place_b: BPlacement
    adc: str = "same-grid"
    """`same-grid`, `other-grid` (the ADC map at half the in-plane resolution), `other-frame`
    (in another Frame of Reference, shifted: registered) or `none` (the node computes the ADC
    from the b=0 and b=1000 images)."""
    seed: int = 3
    separate_b0: bool = False
    """The b=0 images in a series of their own (some scanners split b-values)."""


CASES: tuple[StrokeCase, ...] = (
    StrokeCase("left-siemens", (StrokeLesionSpec("left", 14.0),), siemens),
    StrokeCase("right-two-lesions-ge-no-adc",
               (StrokeLesionSpec("right", 12.0), StrokeLesionSpec("right", 6.0)), ge,
               adc="none", seed=5),
    StrokeCase("left-philips-adc-other-grid", (StrokeLesionSpec("left", 13.0),), philips,
               adc="other-grid", seed=7),
    StrokeCase("normal-comments", (), b_in_comments, seed=11),
    StrokeCase("right-separate-b0-no-adc", (StrokeLesionSpec("right", 13.0),), philips,
               adc="none", seed=17, separate_b0=True),
    # the ADC map in another Frame of Reference, its content 4/-3/2 mm off: registered rigidly
    StrokeCase("left-adc-other-frame", (StrokeLesionSpec("left", 13.0),), siemens,
               adc="other-frame", seed=13),
)


@dataclass(frozen=True)
class WrittenStroke:
    case: StrokeCase
    study_instance_uid: str
    files: list[Path]
    phantom: StrokePhantom

    @property
    def truth_ml(self) -> float:
        voxel_ml = float(np.prod(self.phantom.dwi.spacing)) / 1000.0
        return float(self.phantom.truth.sum()) * voxel_ml


SHIFT_MM = (4.0, -3.0, 2.0)
"""Where the other-frame ADC's content lies relative to the DWI's, in LPS mm."""


def _shifted(volume: Volume, shift_mm: tuple[float, float, float]) -> Volume:
    """The same voxels placed `shift_mm` away (as if the patient moved between series)."""
    affine = volume.affine.copy()
    affine[:3, 3] += np.asarray(shift_mm)
    return Volume(array=volume.array, spacing=volume.spacing, affine=affine)


def _coarser(volume: Volume) -> Volume:
    """Every other row and column: the same field of view on a grid of half the matrix."""
    affine = volume.affine.copy()
    affine[:3, 1] *= 2
    affine[:3, 2] *= 2
    spacing = (volume.spacing[0], volume.spacing[1] * 2, volume.spacing[2] * 2)
    return Volume(array=volume.array[:, ::2, ::2], spacing=spacing, affine=affine)


def write_stroke_study(folder: Path, case: StrokeCase, index: int) -> WrittenStroke:
    phantom = make_stroke_mr(StrokePhantomSpec(shape=(32, 80, 80), spacing=(3.0, 2.6, 2.6),
                                               lesions=case.lesions, seed=case.seed))
    identity = StudyIdentity(patient_id=f"STROKE-{index:03d}",
                             patient_name=f"Stroke^Case{index}",
                             accession_number=f"STK{index:05d}",
                             study_description="MR BRAIN WO CONTRAST")
    adc = {"same-grid": phantom.adc, "other-grid": _coarser(phantom.adc),
           "other-frame": _shifted(phantom.adc, SHIFT_MM), "none": None}
    frame = f"1.2.826.0.1.3680043.10.1563.7.{index}"
    datasets = diffusion_series(phantom.b0, phantom.dwi, adc[case.adc], identity=identity,
                                frame_of_reference_uid=frame, place_b=case.place_b,
                                adc_frame_of_reference_uid=(f"{frame}.2" if case.adc ==
                                                            "other-frame" else None),
                                separate_b0=case.separate_b0)
    paths = write_series(datasets, str(folder / case.name))
    return WrittenStroke(case, identity.study_instance_uid, [Path(p) for p in paths], phantom)
