"""FHIR R4 resources, the FHIR client and read facade, HL7 v2 ORU and MLLP. No torch, no queue."""
