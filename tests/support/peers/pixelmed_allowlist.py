"""PixelMed validator messages that are limitations of the tool, not faults of the object:
each with the clause that makes the object legal and, where it can be checked, a check on the
object itself (docs/VALIDATION.md lists the same). Used by the conformance and e2e tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.support.peers import pixelmed


def measurement_groups(sr: Dataset) -> list[Dataset]:
    """Measurement groups (125007) of the Imaging Measurements container, in order."""
    container = next(i for i in sr.ContentSequence
                     if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(container.ContentSequence)


def _is_tid1501_group(path: Path, match: re.Match[str]) -> bool:
    """The group the message names (1.8.N) is a TID 1501 group: no Referenced Segment
    (121191, TID 1411) and no Image Region (111030, TID 1410)."""
    group = measurement_groups(dcmread(path))[int(match.group("group")) - 1]
    return not any(i.ConceptNameCodeSequence[0].CodeValue in ("121191", "111030")
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
        pixelmed.SR_VALIDATOR,
        re.compile(r"^Error: Template 1410 PlanarROIMeasurements/\[Row 1\] CONTAINER "
                   r'\(125007,DCM,"Measurement Group"\)/\[Row (5|7)\] .*: within '
                   r"1\.8\.(?P<group>\d+): .*: Missing conditional content item$"),
        "PS3.16 TID 1500 row 8 (TID 1410 / 1411 / 1501 groups may be mixed): PixelMed matches "
        "a TID 1501 group (the image-level finding of a radiograph) against TID 1410 and "
        "misses its region rows.",
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
