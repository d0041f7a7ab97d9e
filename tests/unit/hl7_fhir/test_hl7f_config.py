"""The `reporting` settings section: what it refuses at load, and what reaches the encoders."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from hl7_fhir.config import ReportingConfig


@pytest.mark.parametrize("values", [
    {"patient_id_system": "nouri"}, {"accession_system": "mrn"},
    {"patient_id_systems": {"HOSP_A": "not-a-uri"}}, {"timezone": "Mars/Base"},
    {"sending_facility": "X" * 21},
])
def test_bad_site_settings_are_refused_at_load(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ReportingConfig.model_validate(values)


def test_site_settings_reach_the_encode_options() -> None:
    options = ReportingConfig(timezone="Europe/Berlin", patient_id_system="urn:oid:1.2.3",
                              sending_facility="RADIOLOGY").encode_options()
    assert options.timezone == ZoneInfo("Europe/Berlin")
    assert (options.patient_id_system, options.sending_facility) == ("urn:oid:1.2.3",
                                                                     "RADIOLOGY")
