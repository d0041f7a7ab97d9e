"""UID syntax (PS3.5 section 9.1): checked before a UID becomes part of a file path."""

from __future__ import annotations

import re

from dicom_node.errors import InvalidUID

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    """True for a syntactically valid UID of at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def checked_uid(value: object, what: str) -> str:
    """Returns `value` as a valid UID string or raises `InvalidUID` naming `what`."""
    text = str(value).strip().rstrip("\x00") if value is not None else ""
    if not text:
        raise InvalidUID(f"{what} is missing")
    if not is_valid_uid(text):
        # The value itself is not echoed: it could be anything a sender put there.
        raise InvalidUID(f"{what} is not a valid UID ({len(text)} characters)")
    return text
