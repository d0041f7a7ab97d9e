"""Verification SOP Class SCP (C-ECHO, PS3.4 Annex A)."""

from __future__ import annotations

from pynetdicom import evt

from dicom_node.status import Status


class VerificationSCP:
    """Answers C-ECHO with Success."""

    def handle_echo(self, event: evt.Event) -> int:
        return int(Status.SUCCESS)
