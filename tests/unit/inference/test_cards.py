import hashlib

import pytest
import yaml

from inference.cards import load_card, parse_card, verify_weights, write_card
from inference.errors import ChecksumError, ModelCardError


def _card(**over):
    data = {
        "id": "toy", "version": "1", "name": "Toy", "task": "generic", "modality": "CT",
        "intended_use": "tests", "not_for_clinical_use": True, "license": "Apache-2.0",
        "weights": {"format": "state_dict", "files": [{"path": "w.pt", "sha256": "a" * 64}]},
        "labels": [{"key": "x", "name": "X", "code": {"value": "1", "meaning": "x"}}],
    }
    data.update(over)
    return data


def test_valid_card_round_trips(tmp_path):
    card = parse_card(_card())
    write_card(card, tmp_path)
    again = load_card(tmp_path)
    assert again == card
    assert again.labels[0].code.to_code().scheme == "SCT"


def test_invalid_fields_are_named():
    with pytest.raises(ModelCardError, match="task"):
        parse_card(_card(task="astrology"))
    with pytest.raises(ModelCardError, match="sha256"):
        parse_card(_card(weights={"format": "state_dict",
                                  "files": [{"path": "w", "sha256": "xyz"}]}))
    with pytest.raises(ModelCardError, match="not_for_clinical_use"):
        bad = _card()
        del bad["not_for_clinical_use"]
        parse_card(bad)
    with pytest.raises(ModelCardError, match="surprise"):
        parse_card(_card(surprise=1))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ModelCardError, match="no model.yaml"):
        load_card(tmp_path)
    (tmp_path / "model.yaml").write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(ModelCardError, match="YAML"):
        load_card(tmp_path)


def test_checksums(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    card = parse_card(_card(weights={"format": "state_dict",
                                     "files": [{"path": "w.pt", "sha256": good}]}))
    assert verify_weights(card, tmp_path) == [(tmp_path / "w.pt").resolve()]
    (tmp_path / "w.pt").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match=f"card says {good}"):
        verify_weights(card, tmp_path)
    (tmp_path / "w.pt").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        verify_weights(card, tmp_path)


def test_weights_path_cannot_escape(tmp_path):
    card = parse_card(_card(weights={"format": "state_dict",
                                     "files": [{"path": "../w.pt", "sha256": "b" * 64}]}))
    with pytest.raises(ChecksumError, match="leaves the model directory"):
        verify_weights(card, tmp_path / "sub")


def test_committed_demo_card_is_valid_and_marked():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "models" / "ich-demo"
    card = load_card(root)
    assert card.not_for_clinical_use is True
    assert card.task == "ich-classification"
    assert [lab.key for lab in card.labels][0] == "any"
    raw = yaml.safe_load((root / "model.yaml").read_text())
    assert raw["metrics"]["per_class"]["any"]["auc"] is not None
    verify_weights(card, root)
    assert (root / card.weights.files[0].path).stat().st_size < 5 * 1024 * 1024
