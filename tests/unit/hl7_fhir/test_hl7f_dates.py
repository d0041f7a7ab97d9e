"""FHIR date values as ranges and date search prefixes (FHIR R4 3.1.1.5.3)."""

from __future__ import annotations

from datetime import datetime

import pytest

from hl7_fhir.facade.dates import Range, parse_prefixed, parse_range


def _T(hour: int, minute: int, second: int, micro: int = 0) -> datetime:  # noqa: N802
    return datetime(2024, 3, 5, hour, minute, second, micro)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2024", datetime(2024, 1, 1), datetime(2025, 1, 1)),
        ("2024-12", datetime(2024, 12, 1), datetime(2025, 1, 1)),
        ("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1)),
        ("2024-03-05T14:30", datetime(2024, 3, 5, 14, 30), datetime(2024, 3, 5, 14, 31)),
        ("2024-03-05T14:30:15Z", datetime(2024, 3, 5, 14, 30, 15), _T(14, 30, 16)),
        ("2024-03-05T14:30:15+02:00", _T(12, 30, 15), _T(12, 30, 16)),
        ("2024-03-05T00:30:00-01:30", datetime(2024, 3, 5, 2, 0), datetime(2024, 3, 5, 2, 0, 1)),
        ("2024-03-05T14:30:15.25Z", _T(14, 30, 15, 250000), _T(14, 30, 15, 260000)),
        # an unencoded "+" arrives as a space in a query string
        ("2024-03-05T14:30:15 01:00", _T(13, 30, 15), _T(13, 30, 16)),
    ],
)
def test_ranges(text: str, start: datetime, end: datetime) -> None:
    assert parse_range(text) == Range(start, end)


@pytest.mark.parametrize("text", ["24-01-01", "2024-1-1", "2024-03-05T14", "yesterday", ""])
def test_bad_values(text: str) -> None:
    with pytest.raises(ValueError):
        parse_range(text)


def test_prefixes() -> None:
    assert parse_prefixed("2024")[0] == "eq"
    assert parse_prefixed("ge2024-01-01")[0] == "ge"
    with pytest.raises(ValueError, match="not supported"):
        parse_prefixed("ap2024")
