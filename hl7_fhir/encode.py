"""The pure encoders the workers pipeline calls (DESIGN.md: "hl7_fhir.encode (FHIR, ORU)").

- `build_report_bundle(study, findings, device, conclusion, clock, *, preview, options)`
  -> fhir.resources R4B transaction `Bundle`
- `build_oru(study, findings, device, clock, control_id, *, conclusion, options)` -> ER7 text
"""

from hl7_fhir.fhir.bundle import build_report_bundle
from hl7_fhir.hl7v2.oru import build_oru

__all__ = ["build_oru", "build_report_bundle"]
