"""DIMSE status codes the node returns, named as PS3.4 / PS3.7 name them.

No other module writes a bare status literal: the receive path raises the errors in
`dicom_node.errors` (each carries its status) and `dicom_node.ingest.refusal_for` turns every other
exception into one of them, in one place. docs/DICOM.md lists when each status is returned.
"""

from enum import IntEnum


class Status(IntEnum):
    """C-STORE / C-ECHO response statuses (PS3.4 Annex B.2.3, PS3.7 Annex C)."""

    SUCCESS = 0x0000
    # PS3.4 B.2.3: Warning: Elements Discarded (used for a conflicting duplicate: the copy that
    # contradicts the instance already stored under its SOP Instance UID is set aside).
    WARNING_ELEMENTS_DISCARDED = 0xB006
    # PS3.4 B.2.3: Refused: Out of Resources
    OUT_OF_RESOURCES = 0xA700
    # PS3.4 B.2.3: Error: Data Set Does Not Match SOP Class
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    # PS3.4 B.2.3: Error: Cannot Understand
    CANNOT_UNDERSTAND = 0xC000
    # PS3.7 C.4: Failure: Processing failure
    PROCESSING_FAILURE = 0x0110
    # PS3.7 C.4: Failure: SOP Class not supported
    SOP_CLASS_NOT_SUPPORTED = 0x0122

