"""Writing HL7 v2 ER7 text: escaping, data types, segments (HL7 v2.5.1 chapter 2).

The message is composed as text and then strictly parsed with hl7apy by the builder, so what
leaves the node is checked by an independent parser; composing through hl7apy's object model
would not escape delimiters in values (it re-parses assigned strings as ER7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, tzinfo

from hl7_fhir import codes
from hl7_fhir.types import Coded

FIELD, COMPONENT, REPETITION, ESCAPE, SUBCOMPONENT = "|", "^", "~", "\\", "&"
ENCODING_CHARACTERS = COMPONENT + REPETITION + ESCAPE + SUBCOMPONENT
SEGMENT_END = "\r"
#: Longest component hl7apy's strict parser accepts for ST/TX/FT values (v2.5.1 ST: 199),
#: counted on the escaped text.
MAX_COMPONENT = 199
#: HD.1 / EI.2 namespace IDs are IS, at most 20 characters (section 2.A.33, 2.A.25).
MAX_NAMESPACE = 20

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ESCAPES = {
    ESCAPE: "\\E\\",
    FIELD: "\\F\\",
    COMPONENT: "\\S\\",
    SUBCOMPONENT: "\\T\\",
    REPETITION: "\\R\\",
}


def escape(text: str, *, formatted: bool = False) -> str:
    """Escape delimiters (v2.5.1 section 2.7.4). Line breaks become ``\\.br\\`` in formatted
    text (FT, section 2.7.6) and a space elsewhere, since only FT may carry them."""
    # Control characters have no place in ER7 values; \x0b and \x1c would even end an MLLP
    # frame early. Line ends are kept for the line-break handling below.
    text = _CONTROL.sub("", text.replace("\t", " "))
    out = "".join(_ESCAPES.get(ch, ch) for ch in text)
    line_break = "\\.br\\" if formatted else " "
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", line_break)


# One escaped character: an escape sequence (2.7.4, 2.7.6 formatting) or any single character.
_ATOM = re.compile(r"\\(?:[FSTRE]|\.br)\\|.", re.DOTALL)


def fit(text: str, limit: int = MAX_COMPONENT, *, formatted: bool = False) -> str:
    """`text` escaped and cut so that the escaped form has at most `limit` characters, never
    inside an escape sequence; a cut text ends with an ellipsis."""
    escaped = escape(text, formatted=formatted)
    if len(escaped) <= limit:
        return escaped
    out, size = [], 0
    for atom in _ATOM.findall(escaped):
        if size + len(atom) > limit - 1:
            break
        out.append(atom)
        size += len(atom)
    return "".join(out) + "\u2026"


def namespace(value: str | None) -> str:
    """An IS namespace ID escaped, or "" when it does not fit in 20 characters: a cut
    namespace would name another authority."""
    escaped = escape(value or "")
    return escaped if len(escaped) <= MAX_NAMESPACE else ""


def formatted_lines(text: str, limit: int = MAX_COMPONENT) -> list[str]:
    """FT text (2.7.6) escaped and split into pieces of at most `limit` characters, each for
    one OBX-5: at a line break or a space in the second half of a piece when there is one,
    never inside an escape sequence."""
    atoms = _ATOM.findall(escape(text, formatted=True))
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for atom in atoms:
        if size + len(atom) > limit:
            cut = _break_at(current)
            pieces.append("".join(current[:cut]).rstrip(" "))
            current = current[cut:]
            while current and current[0] in (" ", "\\.br\\"):
                current.pop(0)
            size = sum(len(a) for a in current)
        current.append(atom)
        size += len(atom)
    if current or not pieces:
        pieces.append("".join(current))
    return [p for p in pieces if p] or [""]


def _break_at(atoms: list[str]) -> int:
    for index in range(len(atoms) - 1, len(atoms) // 2, -1):
        if atoms[index] in (" ", "\\.br\\"):
            return index
    return len(atoms)


def components(*values: str | None) -> str:
    """One field of escaped components (each fitted to `MAX_COMPONENT`), trailing empty
    components dropped."""
    parts = [fit(v) if v else "" for v in values]
    while parts and not parts[-1]:
        parts.pop()
    return COMPONENT.join(parts)


def subcomponents(*values: str | None) -> str:
    """One component made of escaped subcomponents, trailing empty ones dropped."""
    parts = [fit(v) if v else "" for v in values]
    while parts and not parts[-1]:
        parts.pop()
    return SUBCOMPONENT.join(parts)


def join_components(*encoded: str) -> str:
    """Already-encoded components joined into one field, trailing empty ones dropped."""
    parts = list(encoded)
    while parts and not parts[-1]:
        parts.pop()
    return COMPONENT.join(parts)


def coded(value: Coded) -> str:
    """CWE/CE: identifier^text^name of coding system (table 0396)."""
    return coded_pair(value.system, (value.code, value.display))


def coded_pair(system: str, pair: tuple[str, str]) -> str:
    designator = codes.V2_CODING_SYSTEM.get(system)
    if designator is None:
        raise ValueError(f"no HL7 v2 coding system designator for {system}")
    return components(pair[0], pair[1], designator)


def dtm(value: date | datetime, zone: tzinfo | None = None) -> str:
    """DTM/TS (section 2.A.22): YYYYMMDD[HHMMSS[+ZZZZ]]. An aware time carries its offset;
    with `zone` it is first shown in that zone (same instant, the site's local reading)."""
    if isinstance(value, datetime):
        if zone is not None and value.tzinfo is not None:
            value = value.astimezone(zone)
        text = value.strftime("%Y%m%d%H%M%S")
        return text + value.strftime("%z") if value.tzinfo is not None else text
    return value.strftime("%Y%m%d")


def segment(name: str, fields: Mapping[int, str]) -> str:
    """A segment from {field number: already-encoded field}; absent fields are empty."""
    last = max(fields, default=0)
    return FIELD.join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def message(segments: Iterable[str]) -> str:
    return SEGMENT_END.join(segments) + SEGMENT_END
