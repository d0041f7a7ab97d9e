"""Writing HL7 v2 ER7 text: escaping, data types, segments (HL7 v2.5.1 chapter 2).

The message is composed as text and then strictly parsed with hl7apy by the builder, so what
leaves the node is checked by an independent parser; composing through hl7apy's object model
would not escape delimiters in values (it re-parses assigned strings as ER7).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from hl7_fhir import codes
from hl7_fhir.types import Coded

FIELD, COMPONENT, REPETITION, ESCAPE, SUBCOMPONENT = "|", "^", "~", "\\", "&"
ENCODING_CHARACTERS = COMPONENT + REPETITION + ESCAPE + SUBCOMPONENT
SEGMENT_END = "\r"

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
    out = "".join(_ESCAPES.get(ch, ch) for ch in text)
    line_break = "\\.br\\" if formatted else " "
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", line_break)


def components(*values: str | None) -> str:
    """One field of escaped components, trailing empty components dropped."""
    parts = [escape(v) if v else "" for v in values]
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


def dtm(value: date | datetime) -> str:
    """DTM (section 2.A.22): YYYYMMDD[HHMMSS[+ZZZZ]]."""
    if isinstance(value, datetime):
        text = value.strftime("%Y%m%d%H%M%S")
        return text + value.strftime("%z") if value.tzinfo is not None else text
    return value.strftime("%Y%m%d")


def segment(name: str, fields: Mapping[int, str]) -> str:
    """A segment from {field number: already-encoded field}; absent fields are empty."""
    last = max(fields, default=0)
    return FIELD.join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def message(segments: Iterable[str]) -> str:
    return SEGMENT_END.join(segments) + SEGMENT_END
