"""PixelMed's validators beside dciodvfy: DicomSRValidator on every SR and KOS (IOD and
templates TID 1500 / TID 2010), DicomInstanceValidator on every SEG (and on an SR and a KOS, to
show it does not know their IODs). Every "Error" line fails the test unless the allow-list below
explains it as a limitation of the tool, with the clause (docs/VALIDATION.md says the same)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.encode import NotAnalysed, encode_outputs
from tests.conformance.dicom.headers import VARIANTS, ct_head_variant
from tests.peers import pixelmed

pytestmark = pytest.mark.slow

SCENARIOS = (
    "ct_ich", "mr_stroke", "dx_fracture", "dx_mask", "ct_negative", "dx_negative",
    "ct_not_analysed",
)
HEADER_VARIANTS = ("absent-all-type2", "birthdate-month-13")


def _groups(sr: Dataset) -> list[Dataset]:
    """Measurement groups (125007) of the Imaging Measurements container, in order."""
    container = next(i for i in sr.ContentSequence
                     if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(container.ContentSequence)


def _is_tid1501_group(path: Path, match: re.Match[str]) -> bool:
    """The group the message names (1.8.N) is a TID 1501 group: no Referenced Segment."""
    group = _groups(dcmread(path))[int(match.group("group")) - 1]
    return not any(i.ConceptNameCodeSequence[0].CodeValue == "121191"
                   for i in group.ContentSequence)


def _frames_carry_derivation(path: Path, match: re.Match[str]) -> bool:
    """Every per-frame item carries the Derivation Image Sequence PixelMed looked for in the
    shared item."""
    seg = dcmread(path)
    return all("DerivationImageSequence" in f for f in seg.PerFrameFunctionalGroupsSequence)


def _no_laterality_known(path: Path, match: re.Match[str]) -> bool:
    """The SEG has no laterality because its source gave none as R or L."""
    return "Laterality" not in dcmread(path)


def _orientation_has_two_values(path: Path, match: re.Match[str]) -> bool:
    return len(dcmread(path).PatientOrientation) == 2


@dataclass(frozen=True)
class Allowed:
    """A validator message that is a limitation of the tool, not a fault of the object.

    `check` tightens the pattern: it must hold on the object for the message to be excused."""

    validator: str
    pattern: re.Pattern[str]
    clause: str
    check: Callable[[Path, re.Match[str]], bool] | None = None


ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        pixelmed.SR_VALIDATOR,
        re.compile(r'^Error: Template 1500 MeasurementReport/\[Row 1\] CONTAINER CID 7021/'
                   r'\[Row 4\] CODE \(121058,DCM,"Procedure reported"\): .*Code '
                   r'\((30799-1|30657-1|43468-8|18748-4),LN,"[^"]*"\) not found in context '
                   r"group 100$"),
        "PS3.16 TID 1500 row 4: Procedure Reported is BCID 100, a baseline context group; a "
        "LOINC procedure outside it is legal (PS3.16 6.1.2, baseline groups).",
    ),
    Allowed(
        pixelmed.SR_VALIDATOR,
        re.compile(r"^Error: Template 1411 VolumetricROIMeasurements/\[Row 1\] CONTAINER "
                   r'\(125007,DCM,"Measurement Group"\)/\[Row (5|7|10)\] .*: within '
                   r"1\.8\.(?P<group>\d+): .*: Missing conditional content item$"),
        "PS3.16 TID 1500 row 8 (TID 1410 / 1411 / 1501 groups may be mixed): PixelMed matches "
        "a TID 1501 group against TID 1411 and misses its region / segment rows.",
        _is_tid1501_group,
    ),
    Allowed(
        pixelmed.INSTANCE_VALIDATOR,
        re.compile(r"^Error: GeneralSeriesModule/Laterality/: : Missing conditional attribute$"),
        "PS3.3 C.7.3.1: Laterality (0020,0060) is Type 2C, required only for a paired body "
        "part; PixelMed requires it whenever Image/Frame Laterality is absent.",
        _no_laterality_known,
    ),
    Allowed(
        pixelmed.INSTANCE_VALIDATOR,
        re.compile(r"^Error: GeneralImageModule/PatientOrientation/: PatientOrientation: "
                   r"Incorrect value multiplicity - got 2 but expected 1-1$"),
        "PS3.6: Patient Orientation (0020,0020) has VM 2 (PS3.3 C.7.6.1.1.1: row and column "
        "directions); PixelMed's SEG rule expects 1.",
        _orientation_has_two_values,
    ),
    Allowed(
        pixelmed.INSTANCE_VALIDATOR,
        re.compile(r"^Error: DerivationImageMacro/DerivationImageSequence/: "
                   r"SharedFunctionalGroupsSequence/Item\[1\]/: Missing required sequence "
                   r"attribute \(Type 2\)$"),
        "PS3.3 C.7.6.16: a functional group macro sits in the Shared item or in every "
        "Per-Frame item; the SEG has it per frame.",
        _frames_carry_derivation,
    ),
)


def unexplained(report: pixelmed.Report) -> list[str]:
    """The report's Error lines that no allow-list entry (with its check) explains."""
    left = []
    for line in report.errors:
        explained = False
        for allowed in ALLOWED:
            match = allowed.pattern.match(line)
            if allowed.validator == report.validator and match and (
                allowed.check is None or allowed.check(report.path, match)
            ):
                explained = True
                break
        if not explained:
            left.append(line)
    return left


@pytest.fixture(scope="module")
def reports(scenarios, tmp_path_factory: pytest.TempPathFactory):
    """Every validator run at once (each is a JVM of several seconds)."""
    jobs: list[tuple[str, Path]] = []
    for name in SCENARIOS:
        for path in scenarios[name].output_paths:
            kind = dcmread(path, stop_before_pixels=True).Modality
            jobs.append((pixelmed.INSTANCE_VALIDATOR if kind == "SEG" else pixelmed.SR_VALIDATOR,
                         path))
    root = tmp_path_factory.mktemp("pixelmed-headers")
    for variant_name in HEADER_VARIANTS:
        variant = ct_head_variant(root / variant_name, VARIANTS[variant_name])
        for label, findings in (("result", variant.findings), ("na", NotAnalysed("no series"))):
            for ds in encode_outputs(variant.sources, findings, variant.ctx).datasets():
                path = root / variant_name / f"{label}-{ds.Modality}.dcm"
                ds.save_as(path, enforce_file_format=True)
                jobs.append((pixelmed.INSTANCE_VALIDATOR if ds.Modality == "SEG"
                             else pixelmed.SR_VALIDATOR, path))
    ct = scenarios["ct_ich"]
    jobs += [(pixelmed.INSTANCE_VALIDATOR, ct.path("sr")),
             (pixelmed.INSTANCE_VALIDATOR, ct.path("kos"))]
    return pixelmed.validate_all(jobs)


def _reports_for(reports, folder_name: str):
    return [r for (_, path), r in reports.items() if path.parent.name == folder_name]


@pytest.mark.parametrize("name", [*SCENARIOS, *HEADER_VARIANTS])
def test_pixelmed_finds_no_unexplained_error(reports, name: str) -> None:
    found = [r for r in _reports_for(reports, name)
             if not (r.validator == pixelmed.INSTANCE_VALIDATOR
                     and r.path.stem in ("sr", "kos"))]
    assert found, f"no object of {name} was validated"
    for report in found:
        assert report.completed, f"{report.path.name}: validation did not complete\n{report.text}"
        assert unexplained(report) == [], f"{name}/{report.path.name}:\n{report.text}"


def test_the_sr_validator_checks_the_iod_and_the_template(reports, scenarios) -> None:
    for kind, template in (("sr", "TID_1500"), ("kos", "TID_2010")):
        text = reports[(pixelmed.SR_VALIDATOR, scenarios["ct_ich"].path(kind))].text
        assert "IOD validation complete" in text and f"Found Root Template {template}" in text


def test_the_instance_validator_does_not_know_sr_iods(reports, scenarios) -> None:
    """DicomInstanceValidator has no SR or KOS IOD; DicomSRValidator checks theirs (above)."""
    for kind in ("sr", "kos"):
        text = reports[(pixelmed.INSTANCE_VALIDATOR, scenarios["ct_ich"].path(kind))].text
        assert "IOD (SOP Class) unrecognized" in text


def test_kos_image_items_have_no_concept_name(scenarios) -> None:
    """TID 2010: IMAGE rows have no concept name (PixelMed: "Purpose of Reference (Concept) is
    forbidden for IMAGE content item")."""
    kos = dcmread(scenarios["ct_ich"].path("kos"))
    images = [i for i in kos.ContentSequence if i.ValueType == "IMAGE"]
    assert images and all("ConceptNameCodeSequence" not in i for i in images)


def test_seg_has_an_empty_content_creator_name(scenarios) -> None:
    """Content Creator's Name (0070,0084) is Type 2: present, empty (no person made it)."""
    seg = dcmread(scenarios["ct_ich"].path("seg"))
    assert "ContentCreatorName" in seg and not seg.ContentCreatorName


def test_the_allow_list_does_not_excuse_a_real_fault(reports, scenarios, tmp_path: Path) -> None:
    """A KOS whose IMAGE item has a concept name is an error the allow-list does not excuse,
    and the TID 1501 exception does not cover a TID 1411 group that lost its segment."""
    kos = dcmread(scenarios["ct_ich"].path("kos"))
    image = next(i for i in kos.ContentSequence if i.ValueType == "IMAGE")
    image.ConceptNameCodeSequence = kos.ConceptNameCodeSequence
    broken = tmp_path / "kos-with-concept-name.dcm"
    kos.save_as(broken)
    report = pixelmed.validate(pixelmed.SR_VALIDATOR, broken)
    assert unexplained(report), report.text

    sr_path = scenarios["ct_ich"].path("sr")
    volumetric = next(n for n, g in enumerate(_groups(dcmread(sr_path)), start=1)
                      if any(i.ConceptNameCodeSequence[0].CodeValue == "121191"
                             for i in g.ContentSequence))
    line = (f'Error: Template 1411 VolumetricROIMeasurements/[Row 1] CONTAINER (125007,DCM,'
            f'"Measurement Group")/[Row 7] IMAGE (121191,DCM,"Referenced Segment"): within '
            f'1.8.{volumetric}: /CONTAINER (126000,DCM,"Imaging Measurement Report"): '
            f"Missing conditional content item")
    fake = pixelmed.Report(pixelmed.SR_VALIDATOR, sr_path, line)
    assert unexplained(fake) == [line]
