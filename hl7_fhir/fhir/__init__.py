"""FHIR R4 resource builders (fhir.resources R4B models; R4B shares R4's resource shapes)."""

from hl7_fhir.fhir.bundle import build_report_bundle

__all__ = ["build_report_bundle"]
