"""DICOM wire and objects: SCP/SCU, access control, spool and index, study assembly,
series reading, and the SEG/SR/KOS encoders. Imports nothing else of InferNode."""
