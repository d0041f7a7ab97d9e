"""FHIR date/dateTime values and date search parameters as UTC ranges (FHIR R4 3.1.1.5.3,
"date" search: a value stands for the whole interval of its precision)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

PREFIXES = ("eq", "gt", "lt", "ge", "le")

_VALUE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True)
class Range:
    """Half-open interval [start, end) in naive UTC."""

    start: datetime
    end: datetime


def _add_months(value: datetime, months: int) -> datetime:
    total = value.month - 1 + months
    return value.replace(year=value.year + total // 12, month=total % 12 + 1)


def parse_range(text: str) -> Range:
    """The interval a FHIR date/dateTime/instant covers. Values without an offset are read
    as UTC (this server's zone). Raises `ValueError` on anything else."""
    # A "+" offset arrives as a space when a client forgets to percent-encode it.
    match = _VALUE.match(text.strip().replace(" ", "+"))
    if match is None:
        raise ValueError("not a FHIR date or dateTime")
    g = match.groupdict()
    year, month, day = int(g["y"]), int(g["m"] or 1), int(g["d"] or 1)
    if g["H"] is None:
        start = datetime(year, month, day)
        if g["d"]:
            return Range(start, start + timedelta(days=1))
        if g["m"]:
            return Range(start, _add_months(start, 1))
        return Range(start, start.replace(year=year + 1))
    seconds = int(g["S"] or 0)
    fraction = g["f"] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    local = datetime(year, month, day, int(g["H"]), int(g["M"]), seconds, micro)
    tz = g["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        local -= sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    start = local
    if fraction:
        step = timedelta(microseconds=max(1, 10 ** (6 - min(6, len(fraction) - 1))))
    elif g["S"] is not None:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return Range(start, start + step)


def parse_prefixed(text: str) -> tuple[str, Range]:
    """Split a date search value into its comparison prefix (default eq) and its range.
    Raises `ValueError` on an unsupported prefix (ne, sa, eb, ap) or a bad value."""
    prefix = text[:2] if text[:2].isalpha() else "eq"
    if prefix not in PREFIXES:
        raise ValueError(f"date prefix {prefix!r} is not supported")
    body = text[2:] if text[:2].isalpha() else text
    return prefix, parse_range(body)
