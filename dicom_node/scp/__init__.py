"""DICOM service class providers: one module per service (PS3.4), plus access control."""
