"""Deterministic UIDs for output objects, so that a re-run of a job replaces its results.

A job is keyed by (study, pipeline, model version) (DESIGN.md, "Jobs are idempotent"); every
Series, SOP Instance and Tracking UID an encoder writes is derived from that key and a name
("seg.series", "tracking:IPH", ...). Under the default root ``2.25`` the UID is the decimal
form of a name-based (SHA-1, version 5) UUID, as ISO/IEC 9834-8 and PS3.5 B.2 allow; under an
organisational root the digits of a SHA-256 of the key fill the remaining length.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

UUID_ROOT = "2.25."
"""Default root: needs no registration, unique because the name-based UUID is."""

_NAMESPACE = uuid.UUID("6f0c1d5e-52a4-5d8b-9a57-6e6f64652e31")
"""Fixed namespace of the node's name-based UUIDs; changing it changes every output UID."""

_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.$")
_MAX_UID = 64  # PS3.5 9.1
_MIN_DIGITS = 24  # about 80 bits of the hash must survive under a long root


def derive_uid(root: str, key: str) -> str:
    """The UID for `key` under `root` (which ends with a dot).

    Raises:
        ValueError: the root is not a valid UID prefix or leaves fewer than 24 digits.
    """
    if not _ROOT.match(root):
        raise ValueError("UID root must be dot-separated numbers without leading zeros, ending '.'")
    if root == UUID_ROOT:
        return UUID_ROOT + str(uuid.uuid5(_NAMESPACE, key).int)
    room = _MAX_UID - len(root)
    if room < _MIN_DIGITS:
        raise ValueError("UID root too long to leave room for a unique suffix")
    digits = str(int.from_bytes(hashlib.sha256(key.encode()).digest(), "big"))
    return root + digits[:room]


@dataclass(frozen=True)
class UidFactory:
    """UIDs of one job's outputs: the same (study, pipeline, model version, amendment, name)
    always gives the same UID, and a different model version or amendment gives different ones.

    A re-run of the same job writes the same objects again; an amendment of the study (a late
    series made it run again) writes new instances, because a PACS that already holds a SOP
    Instance UID keeps its first copy (Orthanc's default) and would go on showing the earlier
    result. Amendment 0 keys exactly as before amendments were part of the key."""

    study_instance_uid: str
    pipeline: str
    model_version: str
    root: str = UUID_ROOT
    amendment: int = 0

    def __post_init__(self) -> None:
        derive_uid(self.root, "")  # validates the root once, at construction

    def uid(self, name: str) -> str:
        """The UID named `name` within this job (e.g. "sr.sop", "tracking:IPH")."""
        parts = ["output", self.study_instance_uid, self.pipeline, self.model_version, name]
        if self.amendment:
            parts.insert(4, f"amendment-{self.amendment}")
        return derive_uid(self.root, "|".join(parts))

    def device_uid(self, weights_sha256: str) -> str:
        """The Device UID of a model, derived from its weights alone (IHE AIR: it changes
        when, and only when, the weights change)."""
        return derive_uid(self.root, "device|" + weights_sha256)
