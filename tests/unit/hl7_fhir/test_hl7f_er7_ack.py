"""ER7 escaping and data types, and ACK reading/writing (HL7 v2.5.1 chapter 2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from hl7_fhir.hl7v2 import er7
from hl7_fhir.hl7v2.ack import build_ack, parse_ack

SENT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_escape_every_delimiter_and_line_breaks() -> None:
    assert er7.escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert er7.escape("x\r\ny\nz") == "x y z"
    assert er7.escape("x\r\ny", formatted=True) == "x\\.br\\y"


def test_components_drop_trailing_empties_and_escape() -> None:
    assert er7.components("a", None, "", None) == "a"
    assert er7.components("a^b", None, "c") == "a\\S\\b^^c"


def test_dtm_formats() -> None:
    assert er7.dtm(date(2024, 1, 2)) == "20240102"
    plus_1h = timezone(timedelta(hours=1))
    assert er7.dtm(datetime(2024, 1, 2, 3, 4, 5, tzinfo=plus_1h)) == "20240102030405+0100"


def test_unknown_coding_system_is_refused() -> None:
    with pytest.raises(ValueError, match="designator"):
        er7.coded_pair("http://example.org/cs", ("1", "x"))


def test_ack_round_trip_swaps_apps_and_echoes_control_id() -> None:
    received = "MSH|^~\\&|SND|SF|RCV|RF|20240101||ORU^R01^ORU_R01|CTRL9|P|2.5.1\rPID|1\r"
    text = build_ack(received, "AE", SENT, "ACK1", error_code="207")
    msh = text.split("\r")[0].split("|")
    assert msh[2:6] == ["RCV", "RF", "SND", "SF"]
    ack = parse_ack(text)
    assert (ack.code, ack.control_id, ack.error_code, ack.accepted) == ("AE", "CTRL9", "207", False)
    assert parse_ack(build_ack(received, "AA", SENT, "ACK2")).accepted


def test_parse_ack_tolerates_other_separators_and_lf() -> None:
    ack = parse_ack("MSH#^~\\&#X#Y\nMSA#aa#C7#OK\n")
    assert (ack.code, ack.control_id) == ("AA", "C7")


@pytest.mark.parametrize("text", ["", "PID|1\r", "MSH|^~\\&|A\rPID|1\r"])
def test_parse_ack_refuses_non_acks(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ack(text)
