"""Which failures are retried, and what is recorded about them (workers.failures)."""

from __future__ import annotations

import errno

import pytest
from sqlalchemy.exc import OperationalError

from dicom_node.volume.errors import MissingGeometryError
from inference.errors import InputError, TransientInferenceError
from workers.errors import PermanentError, TransientError
from workers.failures import REASON_MAX, classify, shape_reason


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - a traceback to classify
        return caught


@pytest.mark.parametrize("exc", [
    OSError(errno.EIO, "I/O error"), ConnectionResetError(), TimeoutError(), MemoryError(),
    OperationalError("SELECT 1", {"PatientID": "X"}, Exception("server closed")),
    TransientError("pacs down"), TransientInferenceError("CUDA out of memory"),
])
def test_the_environment_is_retried(exc: BaseException) -> None:
    assert classify(_raised(exc)).transient


@pytest.mark.parametrize("exc", [
    AttributeError("'FileDataset' object has no attribute 'PatientBirthDate'"),
    KeyError("PatientSex"), ValueError("invalid literal for int(): 'abc'"),
    TypeError("unsupported operand"), UnicodeDecodeError("iso2022_jp", b"\x1b", 0, 1, "bad"),
    IndexError("list index out of range"), ZeroDivisionError(),
    PermanentError("bad input"), InputError("volume too small"),
    MissingGeometryError("slice(s) without Image Position (Patient)"),
])
def test_the_data_is_not_retried(exc: BaseException) -> None:
    assert not classify(_raised(exc)).transient


def test_a_library_message_is_never_recorded() -> None:
    failure = classify(_raised(ValueError("Invalid value for VR DA: 'Smith^John'")))
    assert failure.reason == "unexpected"
    assert "Smith" not in failure.detail and "Smith" not in failure.explanation
    assert failure.detail.startswith("ValueError at workers/test_workers_failures.py:")


def test_our_own_messages_are_kept_with_their_reason_code() -> None:
    failure = classify(_raised(MissingGeometryError("3 slice(s) without Pixel Spacing")))
    assert (failure.reason, failure.transient) == ("missing_geometry", False)
    assert failure.explanation == "3 slice(s) without Pixel Spacing"
    assert classify(_raised(PermanentError("x", reason="model_unavailable"))).reason == (
        "model_unavailable")


def test_reasons_are_one_short_line_without_uids() -> None:
    uid = "1.2.826.0.1.3680043.10.1563.9.123456789"
    text = shape_reason(f"series {uid} cannot be read:\n" + "slice missing; " * 40)
    assert len(text) <= REASON_MAX and text.endswith("…")
    assert uid not in text and "…" in text and "\n" not in text
    assert shape_reason("   ") == "no reason given"
    assert shape_reason("short") == "short"
