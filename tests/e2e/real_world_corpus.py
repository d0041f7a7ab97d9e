"""Studies as hospitals really send them, for the end-to-end robustness tests.

Each case is a whole study written by the tests (never by the node's own sample code path
alone): a head CT, MR diffusion series or radiograph whose headers carry one family of legal but
unusual values, and the outcome the node owes it (a result, or a delivered "not analysed"
report). The pixel data is one small head phantom, shared by every CT case so the corpus stays
quick to analyse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.synth import SeriesSpec, StudyIdentity, radiograph, volume_series, write_series
from inference.phantoms.head_ct import PhantomSpec, make_head_ct
from tests.conformance.dicom.headers import Mutation, absent, empty

TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                       "AccessionNumber", "ReferringPhysicianName", "StudyDate", "StudyTime")
"""Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1)."""

JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
"""The PS3.5 H.3.1 example form: alphabetic, ideographic and phonetic groups."""


@dataclass(frozen=True)
class Case:
    """One study of the corpus and what the node must answer."""

    name: str
    pipeline: str
    outcome: str
    """`result`, `not_analysed` or `indeterminate`."""
    mutate: Mutation
    modality: str = "CT"
    extra_series: int = 0
    """Single-image localizer series added to the study (each gets a verdict and a reason)."""


def _malformed(ds: Dataset) -> None:
    # Values a DA/TM/CS reader rejects, as old exports and hand-edited headers carry them.
    ds.PatientBirthDate = "1970-13-45"
    ds.PatientSex = "male"
    ds.StudyDate = "2026.01.01"
    ds.StudyTime = "25:61"
    ds.PatientAge = "about 40"


def _charset(charset: str | list[str], name: str, description: str) -> Mutation:
    def apply(ds: Dataset) -> None:
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.StudyDescription = description
    return apply


def _vendor_private(ds: Dataset) -> None:
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    block.add_new(0x10, "LO", "vendor acquisition note")
    block.add_new(0x20, "DS", "1.5")
    other = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    other.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" * 8)


def _no_geometry(ds: Dataset) -> None:
    del ds.ImagePositionPatient


def _contrast(ds: Dataset) -> None:
    ds.ContrastBolusAgent = "IOPAMIDOL 370"


CASES: tuple[Case, ...] = (
    Case("type2-absent", "ich", "result", absent(*TYPE2_PATIENT_STUDY)),
    Case("type2-empty", "ich", "result", empty(*TYPE2_PATIENT_STUDY)),
    Case("malformed-values", "ich", "result", _malformed),
    Case("japanese-iso2022", "ich", "result",
         _charset(["", "ISO 2022 IR 87"], JAPANESE_NAME, "頭部 CT")),
    Case("latin1", "ich", "result", _charset("ISO_IR 100", "Müller^Jürgen", "Schädel CT")),
    Case("utf8", "ich", "result", _charset("ISO_IR 192", "Ñúñez^José=李^明", "CT cabeza")),
    Case("vendor-private", "ich", "result", _vendor_private),
    Case("no-geometry", "ich", "not_analysed", _no_geometry),
    Case("no-geometry-type2-absent", "ich", "not_analysed",
         lambda ds: (_no_geometry(ds), absent(*TYPE2_PATIENT_STUDY)(ds))),
    Case("no-geometry-japanese", "ich", "not_analysed",
         lambda ds: (_no_geometry(ds), _charset(["", "ISO 2022 IR 87"], JAPANESE_NAME,
                                                "頭部 CT")(ds))),
    # a contrast head CT next to 14 scouts: every series is refused, and the reason listing
    # them all runs to well over a thousand characters before it is shaped for each format
    Case("long-reason", "ich", "not_analysed", _contrast, extra_series=14),
    # a DWI without b=0 images and without an ADC map: nothing to measure the core on
    Case("stroke-dwi-only", "stroke", "not_analysed", lambda ds: None, modality="MR"),
    # a flat 96 x 80 hand radiograph: the fracture card's quality gate refuses it (too small,
    # no contrast), so it is answered "indeterminate - read as usual", never a negative
    Case("fracture-flat-hand", "fracture", "indeterminate", lambda ds: None, modality="DX"),
)


@cache
def _head_hu() -> tuple[np.ndarray, tuple[float, float, float]]:
    spec = PhantomSpec(shape=(16, 128, 128), subtypes=("subdural",), seed=7)
    phantom = make_head_ct(spec)
    return (np.round(phantom.volume.array).astype(np.int16),
            (spec.slice_mm, spec.pixel_mm, spec.pixel_mm))


def _identity(index: int) -> StudyIdentity:
    return StudyIdentity(patient_id=f"RW-{index:04d}", patient_name=f"Corpus^Case{index}",
                         accession_number=f"RWACC{index:04d}")


def _datasets(case: Case, identity: StudyIdentity) -> list[Dataset]:
    if case.modality == "CT":
        hu, spacing = _head_hu()
        return volume_series(hu, spacing, identity=identity,
                             spec=SeriesSpec(series_description="Head 5mm axial"),
                             origin=(-115.0, -115.0, -40.0))
    if case.modality == "MR":
        dwi = np.full((10, 32, 32), 300, dtype=np.int16)
        return volume_series(dwi, (5.0, 2.0, 2.0), identity=identity, spec=SeriesSpec(
            modality="MR", series_description="ep2d_diff b1000 TRACEW", body_part="BRAIN",
            image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"),
            diffusion_b_value=1000))
    image = np.full((96, 80), 1200, dtype=np.uint16)
    return [radiograph(image, (0.2, 0.2), identity=identity,
                       spec=SeriesSpec(modality="DX", series_description="Wrist PA",
                                       body_part="HAND", image_type=("ORIGINAL", "PRIMARY")))]


@dataclass(frozen=True)
class WrittenCase:
    case: Case
    study_instance_uid: str
    files: list[Path]


def write_corpus(folder: Path, cases: tuple[Case, ...] = CASES) -> list[WrittenCase]:
    """Writes every case as its own study under `folder/<case name>`."""
    written = []
    for index, case in enumerate(cases, start=1):
        identity = _identity(index)
        datasets = _datasets(case, identity)
        for ds in datasets:
            case.mutate(ds)
        for number in range(case.extra_series):
            scout = volume_series(np.zeros((1, 32, 32), dtype=np.int16), (5.0, 1.0, 1.0),
                                  identity=identity, spec=SeriesSpec(
                                      series_number=100 + number, image_type=(
                                          "ORIGINAL", "PRIMARY", "LOCALIZER"),
                                      series_description=f"Topogram {number} head lateral "
                                      "0.6 mm reconstruction for planning only"))
            datasets.extend(scout)
        paths = write_series(datasets, str(folder / case.name))
        written.append(WrittenCase(case, identity.study_instance_uid, [Path(p) for p in paths]))
    return written
