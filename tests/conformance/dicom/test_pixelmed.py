"""PixelMed's validators beside dciodvfy: DicomSRValidator on every SR and KOS (IOD and
templates TID 1500 / TID 2010), DicomInstanceValidator on every SEG (and on an SR and a KOS, to
show it does not know their IODs). Every "Error" line fails the test unless the allow-list below
explains it as a limitation of the tool, with the clause (docs/VALIDATION.md says the same)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.encode import NotAnalysed, encode_outputs
from tests.conformance.dicom.headers import VARIANTS, ct_head_variant
from tests.support.peers import pixelmed
from tests.support.peers.pixelmed_allowlist import measurement_groups, unexplained

pytestmark = pytest.mark.slow

SCENARIOS = (
    "ct_ich", "mr_stroke", "dx_fracture", "dx_mask", "ct_negative", "dx_negative",
    "ct_not_analysed",
)
HEADER_VARIANTS = ("absent-all-type2", "birthdate-month-13")


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
    volumetric = next(n for n, g in enumerate(measurement_groups(dcmread(sr_path)), start=1)
                      if any(i.ConceptNameCodeSequence[0].CodeValue == "121191"
                             for i in g.ContentSequence))
    line = (f'Error: Template 1411 VolumetricROIMeasurements/[Row 1] CONTAINER (125007,DCM,'
            f'"Measurement Group")/[Row 7] IMAGE (121191,DCM,"Referenced Segment"): within '
            f'1.8.{volumetric}: /CONTAINER (126000,DCM,"Imaging Measurement Report"): '
            f"Missing conditional content item")
    fake = pixelmed.Report(pixelmed.SR_VALIDATOR, sr_path, line)
    assert unexplained(fake) == [line]
