"""Human texts the encoders write (reasons, descriptions), shaped to what each attribute allows.

Three rules, in this order:

1. no UIDs in words meant for people (STANDARDS.md, "Texts ... carry no UIDs or PHI"):
   ``strip_uids`` replaces anything that looks like a DICOM UID (PS3.5 9.1) with "…";
2. the Value Representation's limits (PS3.5 6.2, Table 6.2-1): maximum length in characters,
   no backslash in multi-valued string VRs (it separates values), control characters only where
   the VR allows them (LT, ST, UT: CR, LF, FF, TAB);
3. only characters the object's Specific Character Set (0008,0005) can encode (PS3.5 6.1):
   the rest become "?" ("…" becomes "..."), so pydicom never writes replacement bytes silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydicom.charset import python_encoding

ELLIPSIS = "…"

_UID = re.compile(r"(?<![\w.])(?:[0-9]+(?:\.[0-9]+){3,}|[0-9]+\.[0-9]+\.[0-9]{8,})(?!\w)")
"""Four or more dot-separated numbers, or three with a long last one (a ``2.25.<uuid>`` UID):
a DICOM UID (PS3.5 9.1) or the like, but not a version number such as 1.2.0."""

MAX_CHARACTERS: dict[str, int] = {
    "SH": 16,
    "LO": 64,
    "ST": 1024,
    "LT": 10240,
    "UT": 2**32 - 2,
}
"""Maximum length in characters per VR (PS3.5 Table 6.2-1)."""

_MULTI_VALUED = {"SH", "LO"}
_DEFAULT_TERMS = {"", "ISO_IR 6", "ISO 2022 IR 6"}
_TEXT_CONTROLS = {"\r", "\n", "\f", "\t"}


def strip_uids(text: str) -> str:
    """`text` with every DICOM-UID-like token (four or more dot-separated numbers, or a
    ``2.25.<digits>`` UID) replaced by "…", so reasons and descriptions shown to people carry
    no identifiers (PS3.5 9.1 UIDs)."""
    return _UID.sub(ELLIPSIS, text)


def _controls_removed(text: str, vr: str) -> str:
    allowed = _TEXT_CONTROLS if vr in {"ST", "LT", "UT"} else set()
    # Other white space (vertical tab, line separators) becomes a space; the rest goes.
    return "".join(
        c if c.isprintable() or c in allowed else " "
        for c in text
        if c.isprintable() or c in allowed or c.isspace()
    )


def _python_encodings(character_set: str | Sequence[str] | None) -> list[str]:
    """Python codecs of the terms; the default repertoire is ASCII (pydicom reads it as
    Latin-1, leniently, but a writer must not put Latin-1 bytes under ISO IR 6)."""
    values = [character_set] if isinstance(character_set, str) else list(character_set or [])
    out = []
    for value in values or [""]:
        term = str(value).strip()
        out.append("ascii" if term in _DEFAULT_TERMS else python_encoding.get(term, "ascii"))
    return out


def _encodable(char: str, encodings: Sequence[str]) -> bool:
    for encoding in encodings:
        try:
            char.encode(encoding)
        except (UnicodeError, LookupError):
            continue
        return True
    return False


def encodable(text: str, character_set: str | Sequence[str] | None) -> str:
    """`text` with each character that no encoding of `character_set` (the value of Specific
    Character Set (0008,0005), PS3.3 C.12.1.1.2) can write replaced: "…" by "...", others by
    "?". No value or an empty one means the default repertoire (ISO IR 6, ASCII)."""
    encodings = _python_encodings(character_set)
    out = []
    for char in text:
        if char.isascii() or _encodable(char, encodings):
            out.append(char)
        elif char == ELLIPSIS:
            out.append("...")
        else:
            out.append("?")
    return "".join(out)


def shape_text(
    text: str,
    vr: str,
    character_set: str | Sequence[str] | None = None,
    max_characters: int | None = None,
) -> str:
    """`text` made fit for an attribute of value representation `vr` (SH, LO, ST, LT or UT) in
    an object with `character_set`: UIDs stripped, control characters and (for SH/LO)
    backslashes removed, unencodable characters replaced, and cut to the VR's maximum length
    (or `max_characters` when smaller) with a trailing "..." when cut. Never empty when `text`
    has a printable character.

    Raises:
        KeyError: a VR this function does not shape.
    """
    limit = min(MAX_CHARACTERS[vr], max_characters or MAX_CHARACTERS[vr])
    shaped = _controls_removed(strip_uids(text), vr)
    if vr in _MULTI_VALUED:
        shaped = shaped.replace("\\", "/")
    shaped = encodable(shaped, character_set).strip()
    if len(shaped) > limit:
        shaped = shaped[: limit - 3].rstrip() + "..."  # every limit above is at least 16
    return shaped
