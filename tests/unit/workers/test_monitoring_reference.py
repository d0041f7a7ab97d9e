"""Monitoring reference and PSI: bins, the YAML round trip, the statistic's values."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from workers.monitoring import features
from workers.monitoring.reference import (
    OTHER,
    build_reference,
    load_reference,
    psi,
)
from workers.monitoring.tables import SCORE_EDGES

AT = datetime(2026, 11, 1, tzinfo=UTC)


def _records(values: list[float], scanners: list[str]) -> list[dict[str, object]]:
    return [{"slice_thickness_mm": v, "scanner": s} for v, s in zip(values, scanners,
                                                                   strict=True)]


def test_quintile_bins_and_round_trip(tmp_path: Path) -> None:
    values = [float(v) for v in range(1, 101)]
    ref = build_reference(_records(values, ["A"] * 60 + ["B"] * 40), model="m", version="1",
                          pipeline="ich", source="test", captured_at=AT)
    thickness = ref.features["slice_thickness_mm"]
    assert len(thickness.edges) == 4
    assert all(share == pytest.approx(0.2) for share in thickness.shares.values())
    assert thickness.bin(0.0) == "b0" and thickness.bin(1000.0) == "b4"
    assert dict(ref.features["scanner"].shares) == {"A": 0.6, "B": 0.4}
    assert ref.features["scanner"].bin("C") == OTHER
    (tmp_path / "monitoring_reference.yaml").write_text(ref.to_yaml())
    again = load_reference(tmp_path)
    assert again is not None and again.features["slice_thickness_mm"].edges == thickness.edges
    assert dict(again.features["scanner"].shares) == dict(ref.features["scanner"].shares)
    assert load_reference(tmp_path / "none") is None


def test_psi_values() -> None:
    ref = build_reference(_records([1.0] * 50 + [5.0] * 50, ["A"] * 50 + ["B"] * 50),
                          model="m", version="1", pipeline="ich", source="t", captured_at=AT)
    scanner = ref.features["scanner"]
    assert psi(scanner, Counter({"A": 30, "B": 30})) == pytest.approx(0.0)
    # 80/20 against 50/50: (0.3 ln(0.8/0.5)) + (-0.3 ln(0.2/0.5))
    expected = 0.3 * math.log(0.8 / 0.5) + (-0.3) * math.log(0.2 / 0.5)
    assert psi(scanner, Counter({"A": 80, "B": 20})) == pytest.approx(expected, abs=1e-6)
    assert psi(scanner, Counter()) is None
    # a scanner never seen at validation makes the PSI large (shares floored at 1e-4)
    assert psi(scanner, Counter({OTHER: 50, "A": 25, "B": 25})) > 2.0


def test_input_features_of_a_header_and_volume() -> None:
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName = "Maker", "Model X"
    ds.SliceThickness, ds.PixelSpacing = "2.5", ["0.5", "0.5"]
    ds.AccessionNumber = "A123"
    vox = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    facts = features.input_features(ds, vox, score=0.25)
    assert facts["scanner"] == "Maker Model X" and facts["kernel"] == "none"
    assert (facts["slice_thickness_mm"], facts["pixel_spacing_mm"]) == (2.5, 0.5)
    assert facts["intensity_mean"] == pytest.approx(499.5)
    assert facts["intensity_p05"] == pytest.approx(np.percentile(vox, 5), abs=0.01)
    assert facts["accession"] == features.accession_key(" A123 ") != "A123"
    assert features.decode({features.MONITORING_KEY: features.encode(facts)}) == facts
    assert features.accession_key("") is None
    assert SCORE_EDGES[0] == 0.0 and SCORE_EDGES[-1] == 1.0
