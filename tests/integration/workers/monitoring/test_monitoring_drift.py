"""A month of synthetic ich traffic with a new scanner (other kernel, thin slices, shifted
intensities) from day 16: the daily aggregates show PSI rising past 0.25, the exported gauge
carries it, and the alert rule of deploy/prometheus/rules/monitoring.yml fires on the series
exported from the aggregates (evaluated by `promtool test rules`, not by our code)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from infernode.db import create_engine, migrate
from tests.integration.workers.monitoring.monitoring_support import (
    analysed_summary,
    finish_job,
    header,
    pick,
    validation_records,
)
from workers.config import WorkersConfig
from workers.messages import ReportOutcome
from workers.monitoring import features
from workers.monitoring.aggregate import aggregate_range, daily_rows
from workers.monitoring.metrics import register_monitoring_metrics
from workers.monitoring.reference import build_reference, load_references

REPO = Path(__file__).resolve().parents[4]
RULES = REPO / "deploy" / "prometheus" / "rules" / "monitoring.yml"
FIRST = date(2026, 11, 1)
DAYS = 30
DRIFT_DAY = 16  # day index (0-based) from which the new scanner appears
PER_DAY = 18
THRESHOLD = 0.25


def _replay(engine, cfg: WorkersConfig) -> None:
    rng = np.random.default_rng(7)
    for d in range(DAYS):
        start = datetime.combine(FIRST + timedelta(days=d), datetime.min.time(), tzinfo=UTC)
        for i in range(PER_DAY):
            at = start + timedelta(minutes=40 * i + 5)
            scanner = pick(rng, d >= DRIFT_DAY)
            if i % 9 == 8:  # one in nine cannot be analysed
                summary = {features.MONITORING_KEY: features.encode(
                    features.header_features(header(scanner, rng, f"A{d}-{i}")))}
                finish_job(engine, cfg, at, summary=summary,
                           outcome=ReportOutcome.NOT_ANALYSED, reason="no_usable_series")
                continue
            score = float(rng.beta(1.2, 4.0))
            finish_job(engine, cfg, at, summary=analysed_summary(
                scanner, rng, f"A{d}-{i}", score >= 0.5, score))


def _promtool_series(rows: list[dict]) -> tuple[list[dict], dict[str, float]]:
    """One hourly series per feature from the stored daily PSI (each day's value held for 24
    samples, as the node exports it all day), and the last day's values."""
    by_feature: dict[str, list[str]] = {}
    for row in rows:
        for name in sorted({*features.FEATURES}):
            value = (row["psi"] or {}).get(name)
            text = "_x23" if value is None else f"{value}+0x23"
            by_feature.setdefault(name, []).append(text)
    series = [{"series": 'infernode_monitoring_input_psi{pipeline="ich",'
                         f'model_version="0.2.0",feature="{name}"}}',
               "values": " ".join(values)} for name, values in by_feature.items()]
    return series, rows[-1]["psi"]


def test_a_month_with_drift_half_way_raises_psi_and_fires_the_alert(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'node.db'}")
    migrate(engine)
    cfg = WorkersConfig()  # the default rules route a head CT to ich 0.2.0
    # the reference captured at validation, written next to a card and read back
    model_dir = tmp_path / "models" / "ich-demo"
    model_dir.mkdir(parents=True)
    reference = build_reference(validation_records(400, seed=11), model="ich-demo",
                                version="0.2.0", pipeline="ich", source="validation phantoms",
                                captured_at=datetime(2026, 10, 1, tzinfo=UTC))
    (model_dir / "monitoring_reference.yaml").write_text(reference.to_yaml())
    references = load_references([tmp_path / "models"])
    assert set(references) == {("ich", "0.2.0")}

    _replay(engine, cfg)
    clock = iter(datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=s) for s in range(99))
    written = aggregate_range(engine, FIRST, FIRST + timedelta(days=DAYS - 1),
                              lambda p, v: references.get((p, v)), lambda: next(clock))
    assert written == DAYS
    rows = daily_rows(engine, "ich")
    assert [r["day"] for r in rows] == [FIRST + timedelta(days=d) for d in range(DAYS)]
    assert all(r["jobs"] == PER_DAY and r["results"] == PER_DAY - 2 for r in rows)
    assert all(r["not_analysed"] == {"no_usable_series": 2} for r in rows)
    assert all(sum(r["scores"].values()) == r["results"] for r in rows)

    worst = [max(r["psi"].values(), default=None) for r in rows]
    # the first days have too few studies in their window for a PSI
    assert worst[:3] == [None, None, None], worst  # 16, 32, 48 studies: under 50
    stable = worst[3:DRIFT_DAY]
    assert all(w is not None and w < THRESHOLD for w in stable), worst
    assert all(w is not None and w > THRESHOLD for w in worst[DRIFT_DAY:]), worst
    last = rows[-1]["psi"]
    assert {"scanner", "kernel", "slice_thickness_mm"} <= {k for k, v in last.items()
                                                           if v > THRESHOLD}

    # the gauge the node exports carries the last day's PSI
    registry = CollectorRegistry()
    register_monitoring_metrics(registry, engine, lambda: datetime(2026, 12, 1, tzinfo=UTC))
    text = generate_latest(registry).decode()
    assert (f'infernode_monitoring_input_psi{{feature="kernel",model_version="0.2.0",'
            f'pipeline="ich"}} {last["kernel"]}') in text

    # the alert rule, evaluated by promtool on the series exported from the aggregates
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (Debian package prometheus)")
    series, last_psi = _promtool_series(rows)
    firing_last = sorted(k for k, v in last_psi.items() if v > THRESHOLD)
    stable_day = DRIFT_DAY - 2
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1h",
        "tests": [{
            "interval": "1h",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": f"{stable_day * 24 + 12}h", "alertname": "InferNodeInputDrift",
                 "exp_alerts": []},
                {"eval_time": f"{(DAYS - 1) * 24 + 12}h", "alertname": "InferNodeInputDrift",
                 "exp_alerts": [{
                     "exp_labels": {"severity": "warning", "pipeline": "ich",
                                    "model_version": "0.2.0", "feature": name},
                     "exp_annotations": {
                         "summary": f"Input drift on {name} for ich 0.2.0",
                         "description": _description(name)},
                 } for name in firing_last]},
            ],
        }],
    }
    path = tmp_path / "monitoring_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    engine.dispose()


def _description(feature: str) -> str:
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "InferNodeInputDrift")
    return rule["annotations"]["description"].replace("{{ $labels.feature }}", feature)
