"""The input reference of a model version, captured at validation, and the drift statistic.

A reference lists, per input feature, the bins and the share of validation inputs in each:
numeric features by the quintiles of the validation values (five bins, open-ended first and
last: more would make the PSI of a week of a small site's studies mostly sampling noise),
categorical features by category (everything unseen falls in `__other__`). It lives next to the
model card as `monitoring_reference.yaml` under the key `monitoring_reference` (the card itself
is strict and is not rewritten).

Drift is the Population Stability Index per feature,
``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over the reference's bins, with `e` the reference
shares and `a` the observed shares (both floored at 1e-4 so an empty bin stays finite).
Conventional reading: below 0.1 stable, 0.1-0.25 moderate, above 0.25 a significant shift.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from workers.monitoring.features import CATEGORICAL, NUMERIC

REFERENCE_FILE = "monitoring_reference.yaml"
OTHER = "__other__"
MISSING = "__missing__"
_FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureReference:
    """Bins of one feature: `edges` (numeric, inner edges, ascending) or `categories`, and
    the reference share of each bin (`shares`, keyed by bin label)."""

    name: str
    shares: Mapping[str, float]
    edges: tuple[float, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.name in NUMERIC

    def bin(self, value: Any) -> str:
        """The label of the bin `value` falls in."""
        if value is None or value == "":
            return MISSING
        if self.numeric:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return MISSING
            return f"b{int(np.searchsorted(np.asarray(self.edges), number, side='right'))}"
        text = str(value)
        return text if text in self.shares else OTHER

    def labels(self) -> list[str]:
        if self.numeric:
            return [f"b{i}" for i in range(len(self.edges) + 1)] + [MISSING]
        return [*self.shares, OTHER, MISSING]


@dataclass(frozen=True)
class Reference:
    """The validation reference of one model version."""

    model: str
    version: str
    pipeline: str
    features: Mapping[str, FeatureReference]
    cases: int
    source: str
    captured_at: str
    positive_rate: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_yaml(self) -> str:
        body: dict[str, Any] = {
            "model": self.model, "version": self.version, "pipeline": self.pipeline,
            "cases": self.cases,
            "source": self.source, "captured_at": self.captured_at,
            "features": {name: ({"edges": list(f.edges)} if f.numeric else {})
                         | {"shares": dict(f.shares)} for name, f in self.features.items()},
        }
        if self.positive_rate is not None:
            body["positive_rate"] = self.positive_rate
        return yaml.safe_dump({"monitoring_reference": body}, sort_keys=False)


def _quintile_edges(values: Sequence[float]) -> tuple[float, ...]:
    qs = np.quantile(np.asarray(values, dtype=np.float64), [i / 5 for i in range(1, 5)])
    return tuple(sorted({round(float(q), 6) for q in qs}))


def build_reference(records: Iterable[Mapping[str, Any]], *, model: str, version: str,
                    pipeline: str, source: str, captured_at: datetime,
                    positive_rate: float | None = None) -> Reference:
    """A reference from the feature records (`features.input_features`) of validation inputs.

    Raises:
        ValueError: no records.
    """
    rows = list(records)
    if not rows:
        raise ValueError("no validation inputs to build a monitoring reference from")
    built: dict[str, FeatureReference] = {}
    for name in NUMERIC:
        values = [float(r[name]) for r in rows if r.get(name) is not None]
        edges = _quintile_edges(values) if values else ()
        probe = FeatureReference(name, {}, edges)
        counts = Counter(probe.bin(r.get(name)) for r in rows)
        built[name] = FeatureReference(name, _shares(counts, probe.labels(), len(rows)), edges)
    for name in CATEGORICAL:
        counts = Counter(str(r[name]) if r.get(name) not in (None, "") else MISSING
                         for r in rows)
        shares = {k: v / len(rows) for k, v in sorted(counts.items()) if k != MISSING}
        if counts.get(MISSING):
            shares[MISSING] = counts[MISSING] / len(rows)
        built[name] = FeatureReference(name, shares)
    return Reference(model=model, version=version, pipeline=pipeline, features=built,
                     cases=len(rows),
                     source=source, captured_at=captured_at.isoformat(),
                     positive_rate=positive_rate)


def _shares(counts: Mapping[str, int], labels: Sequence[str], total: int) -> dict[str, float]:
    return {label: counts.get(label, 0) / total for label in labels if counts.get(label, 0)}


def load_reference(model_dir: Path) -> Reference | None:
    """The reference next to the card in `model_dir`, or None when there is none.

    Raises:
        ValueError: the file exists but is not a monitoring reference.
    """
    path = model_dir / REFERENCE_FILE
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    body = data.get("monitoring_reference") if isinstance(data, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("features"), dict):
        raise ValueError(f"{path}: no monitoring_reference.features")
    features = {str(name): FeatureReference(
        str(name), {str(k): float(v) for k, v in (spec.get("shares") or {}).items()},
        tuple(float(e) for e in spec.get("edges") or ()))
        for name, spec in body["features"].items()}
    rate = body.get("positive_rate")
    return Reference(model=str(body.get("model", "")), version=str(body.get("version", "")),
                     pipeline=str(body.get("pipeline", "")), features=features,
                     cases=int(body.get("cases", 0)),
                     source=str(body.get("source", "")),
                     captured_at=str(body.get("captured_at", "")),
                     positive_rate=float(rate) if rate is not None else None)


def psi(reference: FeatureReference, counts: Mapping[str, int]) -> float | None:
    """PSI of the observed bin `counts` against the reference shares; None without counts."""
    total = sum(counts.values())
    if total == 0:
        return None
    labels = set(reference.labels()) | set(counts)
    value = 0.0
    for label in labels:
        expected = max(reference.shares.get(label, 0.0), _FLOOR)
        actual = max(counts.get(label, 0) / total, _FLOOR)
        value += (actual - expected) * math.log(actual / expected)
    return round(value, 6)


def load_references(model_paths: Iterable[Path]) -> dict[tuple[str, str], Reference]:
    """Every reference under the model folders (each folder, or its sub-folders, holding a
    card), keyed by (pipeline, model version). Unreadable files are skipped."""
    found: dict[tuple[str, str], Reference] = {}
    for root in model_paths:
        if not root.is_dir():
            continue
        for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            try:
                reference = load_reference(folder)
            except (ValueError, OSError, yaml.YAMLError):
                continue
            if reference is not None:
                found[(reference.pipeline, reference.version)] = reference
    return found
