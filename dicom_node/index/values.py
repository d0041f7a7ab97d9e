"""Header values made to fit the index, identically on SQLite and PostgreSQL.

The spool keeps every value as it arrived; the index holds what fits its columns: text without NUL
(PostgreSQL refuses NUL in text), clipped to the column length (PostgreSQL refuses a longer value,
SQLite would keep it: clipping makes both hold the same), integers inside the column's range,
finite floats, dates as YYYYMMDD or nothing. Reading stays tolerant (CONVENTIONS 5): a value that
cannot be used becomes NULL, never a refusal of the instance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from sqlalchemy import BigInteger, Float, Integer, String, Table

from dicom_node.index.parse import NOT_PLAIN, PARSE_ERRORS, plain_text

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# DA is YYYYMMDD (PS3.5 6.2); ACR-NEMA 2.0 wrote YYYY.MM.DD, which PS3.5 6.2 still lets a reader
# accept. Hyphens are not DICOM but unambiguous.
_DATE = re.compile(r"^(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})$")


def clean_text(value: object) -> str | None:
    """A value as one string: values of a multi-valued element joined by backslash (PS3.5 6.4)
    as the file holds them, NUL removed, surrounding spaces stripped; None when empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\x00", "").strip()
    return text or None


def normalise_date(value: object) -> str | None:
    """A DA value as YYYYMMDD, or None when it is not one date (ranges, garbage, 20261399)."""
    text = clean_text(value)
    match = _DATE.match(text) if text else None
    if match is None:
        return None
    year, month, day = (int(g) for g in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        return None
    return f"{year:04d}{month:02d}{day:02d}"


def text_value(ds: Dataset, keyword: str) -> str | None:
    """A text element decoded with the data set's character set; the raw bytes (Latin-1) when
    pydicom cannot convert it. Never raises for a damaged value."""
    plain = plain_text(ds, keyword)
    if plain is not NOT_PLAIN:
        return clean_text(plain)
    try:
        return clean_text(ds.get(keyword))
    except PARSE_ERRORS:
        return clean_text(_raw_bytes(ds, keyword))


def text_values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """The values of a multi-valued text element (e.g. Image Type), each cleaned as by
    `clean_text`, empty ones left out. Never raises for a damaged value."""
    plain = plain_text(ds, keyword, multi=True)
    if plain is not NOT_PLAIN:
        values: list[object] = list(plain.split("\\")) if plain else []
    else:
        try:
            value = ds.get(keyword)
        except PARSE_ERRORS:
            return ()
        if value is None or value == "":
            return ()
        values = [value] if isinstance(value, str) else list(value)
    return tuple(text for text in (clean_text(v) for v in values) if text)


def number_value(ds: Dataset, keyword: str) -> float | None:
    """An IS/DS value read from its bytes (first value of a multi-valued one); None unless it is
    one finite number. pydicom's own IS/DS conversion is not used: it raises on legal-looking
    odd values ("1.5" in an IS) that must not refuse the instance."""
    text = clean_text(_raw_bytes(ds, keyword))
    if text is None:
        return None
    try:
        number = float(text.split("\\")[0])
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def int_value(ds: Dataset, keyword: str, bounds: tuple[int, int] = INT32) -> int | None:
    """An IS value as an integer within `bounds`; None when absent, fractional or out of range."""
    number = number_value(ds, keyword)
    if number is None or not number.is_integer():
        return None
    whole = int(number)
    return whole if bounds[0] <= whole <= bounds[1] else None


def _raw_bytes(ds: Dataset, keyword: str) -> bytes | None:
    try:
        element = ds.get_item(Tag(keyword))
    except PARSE_ERRORS:
        return None
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        return value
    if value is None:
        return None
    return str(clean_text(value) or "").encode("latin-1", "replace")


def fit(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` made to fit `table`'s column types (see the module docstring)."""
    limits = _limits(table)
    fitted: dict[str, Any] = {}
    for name, value in values.items():
        limit = limits[name]
        if isinstance(value, str):
            value = value.replace("\x00", "")
            if isinstance(limit, int):
                value = value[:limit]
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int) and isinstance(limit, tuple):
            value = value if limit[0] <= value <= limit[1] else None
        elif isinstance(value, float) and limit is _FLOAT:
            value = value if math.isfinite(value) else None
        fitted[name] = value
    return fitted


_FLOAT = object()
_LIMITS: dict[Table, dict[str, object]] = {}


def _limits(table: Table) -> dict[str, object]:
    """Per column of `table`, what `fit` checks: a string's length, an integer's bounds, a
    float's finiteness, or nothing. Worked out once per table (fit runs for every instance)."""
    known = _LIMITS.get(table)
    if known is None:
        known = {}
        for column in table.c:
            kind = column.type
            if isinstance(kind, String):
                known[column.name] = kind.length
            elif isinstance(kind, Integer):
                known[column.name] = INT64 if isinstance(kind, BigInteger) else INT32
            elif isinstance(kind, Float):
                known[column.name] = _FLOAT
            else:
                known[column.name] = None
        _LIMITS[table] = known
    return known
