"""A retrained fracture model keeps the shipped card's input gate and uncertainty limit."""

from __future__ import annotations

from pathlib import Path

import yaml

from inference.training.fracture import FractureParams, TrainConfig, card_skeleton

CARD = Path(__file__).parents[3] / "models" / "fracture-demo" / "model.yaml"


def test_the_trainer_writes_the_shipped_quality_and_uncertainty_sections():
    shipped = yaml.safe_load(CARD.read_text(encoding="utf-8"))
    skeleton = card_skeleton(TrainConfig(), FractureParams())
    assert skeleton["quality"] == shipped["quality"]
    assert skeleton["uncertainty"] == shipped["uncertainty"]
