"""A routing rule selects which ICH model runs: the demo classifier by default, the real
BLAST-CT ensemble through a pipeline spec that names it (weights from ../shared/models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.config import ModelPipelineSpec, WorkersConfig
from workers.registry import PipelineRegistry
from workers.routing import route
from workers.samples import series, study

BLAST_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "models" / "blast-ct-v1"


def _cfg(tmp_path: Path) -> WorkersConfig:
    base = WorkersConfig()
    node = {"db_url": f"sqlite:///{tmp_path / 'db'}", "output_dir": str(tmp_path / "out"),
            "model_paths": ["models", str(BLAST_DIR)], "warmup": False}
    pipelines = {**base.pipelines, "ich-blast": ModelPipelineSpec(
        kind="ich", model_version="1", model="blast-ct", options=node)}
    pipelines["ich"] = pipelines["ich"].model_copy(
        update={"options": {**node, **pipelines["ich"].options}})
    rules = [r.model_copy(update={"pipeline": "ich-blast"}) if r.pipeline == "ich" else r
             for r in base.rules]
    return base.model_copy(update={"pipelines": pipelines, "rules": rules})


def test_a_rule_can_route_head_ct_to_the_blast_ct_pipeline(tmp_path):
    cfg = _cfg(tmp_path)
    explanation = route(study(series()), cfg.rules, cfg.exclusions)
    assert [d.pipeline for d in explanation] == ["ich-blast"]


@pytest.mark.skipif(not BLAST_DIR.is_dir(),
                    reason=f"BLAST-CT weights not found at {BLAST_DIR} (data beside the project)")
def test_the_blast_ct_pipeline_loads_the_real_ensemble(tmp_path):
    registry = PipelineRegistry(_cfg(tmp_path).pipelines, "cpu")
    pipeline = registry.get("ich-blast")
    assert pipeline.model_version == "1"
    card = pipeline.registry.card("blast-ct")  # type: ignore[attr-defined]
    assert len(card.weights.files) == 12
    demo = registry.get("ich")
    assert demo.model_version == "0.2.0"
