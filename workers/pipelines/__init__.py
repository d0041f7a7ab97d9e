"""Clinical pipelines: each joins read (dicom_node) -> infer (inference) -> encode (dicom_node,
hl7_fhir) and writes its outputs before the job completes."""
