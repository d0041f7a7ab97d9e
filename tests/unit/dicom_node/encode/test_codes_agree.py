"""The DICOM code table says what the model card's table says (inference/codes.py is the
source of finding codes), so the SR, SEG, FHIR and HL7 of one study never disagree."""

from __future__ import annotations

import ast
from pathlib import Path

from dicom_node.encode import codes

INFERENCE_CODES = Path(__file__).parents[4] / "inference" / "codes.py"


def _card_codes() -> dict[str, tuple[str, str]]:
    """code value -> (scheme, meaning) of every Code(...) in inference/codes.py, read as text
    (dicom_node may not import inference)."""
    found = {}
    for node in ast.walk(ast.parse(INFERENCE_CODES.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Code":
            value, scheme, meaning = (ast.literal_eval(a) for a in node.args[:3])
            found[value] = (scheme, meaning)
    return found


def test_finding_codes_agree_with_the_model_card_table() -> None:
    card = _card_codes()
    assert "83329005" in card  # the table was read
    by_meaning = {meaning: value for value, (_, meaning) in card.items()}
    for name in dir(codes):
        code = getattr(codes, name)
        if not isinstance(code, codes.Coded) or code.scheme != codes.SCT:
            continue
        if code.value in card:
            assert card[code.value] == (code.scheme, code.meaning), name
        if code.meaning in by_meaning:
            assert by_meaning[code.meaning] == code.value, name
