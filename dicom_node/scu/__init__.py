"""DICOM service class users: one module per service (PS3.4), named as the standard names it."""
