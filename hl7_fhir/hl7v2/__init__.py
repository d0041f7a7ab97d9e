"""HL7 v2.5.1: ORU^R01 builder, ACK handling and the MLLP client."""

from hl7_fhir.hl7v2.ack import Ack, build_ack, parse_ack
from hl7_fhir.hl7v2.mllp import send_mllp
from hl7_fhir.hl7v2.oru import build_oru, validate_strict

__all__ = ["Ack", "build_ack", "build_oru", "parse_ack", "send_mllp", "validate_strict"]
