"""The PHI-free log helpers as pure functions (the process-wide install is exercised by the
e2e canary test, in a node process of its own)."""

from __future__ import annotations

import sys

from common.errors import NodeError
from infernode.logs import scrubbed_traceback, summarise


def test_pydicom_messages_keep_their_words_tags_and_vrs_never_values():
    cases = {
        "Invalid value for VR DA: 'CANARY1970'.": "Invalid value for VR DA",
        "The value length (80) exceeds the maximum length of 64 allowed for VR LO.":
            "VR LO",
        "Unknown encoding 'ISO_IR CANARY' - using default encoding instead":
            "Unknown encoding - using default encoding instead",
        "/x/valuerep.py:440: UserWarning: Invalid value for VR PN: b'CANARY\\x07'\n"
        "  warn_and_log(msg)": "UserWarning",
        "Failed to decode (0010,0010) CANARY^NAME using charset": "tags (0010,0010)",
    }
    for message, kept in cases.items():
        summary = summarise(message)
        assert kept in summary, (message, summary)
        assert "CANARY" not in summary.upper(), summary
        assert summary.endswith("(values withheld)")


def _raise_chain(patient_id: str, name: str) -> None:
    try:
        raise ValueError(f"invalid literal {patient_id!r}")
    except ValueError as exc:
        raise RuntimeError(f"decode of {name} failed") from exc


def test_tracebacks_keep_frames_and_types_and_only_the_nodes_own_messages():
    try:
        _raise_chain("CANARY" + "PID", "CANARY" + "NAME")
    except RuntimeError:
        text = scrubbed_traceback(sys.exc_info())
    assert "CANARYPID" not in text and "CANARYNAME" not in text
    assert "builtins.ValueError (message withheld)" in text
    assert "builtins.RuntimeError (message withheld)" in text
    assert "_raise_chain" in text and "test_logs.py" in text

    class Refused(NodeError):
        pass

    try:
        raise Refused("series 1.2.3 has no pixel data")
    except Refused:
        text = scrubbed_traceback(sys.exc_info())
    assert "series 1.2.3 has no pixel data" in text
