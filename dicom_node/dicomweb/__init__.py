"""DICOMweb clients (PS3.18): STOW-RS to a PACS."""
