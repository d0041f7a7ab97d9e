from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def demo_models_dir() -> Path:
    return REPO / "models"
