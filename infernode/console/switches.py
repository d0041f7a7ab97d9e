"""Per-pipeline switches set on the console's Models page, and the hook routing honours.

A disabled pipeline gets no new jobs: `apply_switches` turns off its routing rules in the
workers section handed to `workers.submit.on_study_ready` (the node calls it for every completed
study), so the routing decision recorded for the study says no rule of that pipeline ran. Jobs
already queued or running are left alone; retry and replay still work.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from infernode.console.tables import pipeline_switches
from workers.config import WorkersConfig


def disabled_pipelines(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(pipeline_switches.c.pipeline).where(
            pipeline_switches.c.enabled.is_(False)))}


def set_enabled(engine: Engine, pipeline: str, enabled: bool, user: str) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        done = conn.execute(pipeline_switches.update().where(
            pipeline_switches.c.pipeline == pipeline).values(
            enabled=enabled, changed_by=user, changed_at=now))
        if done.rowcount == 0:
            conn.execute(pipeline_switches.insert().values(
                pipeline=pipeline, enabled=enabled, changed_by=user, changed_at=now))


def apply_switches(engine: Engine, cfg: WorkersConfig) -> WorkersConfig:
    """`cfg` with the routing rules of disabled pipelines turned off (the same object when no
    pipeline is disabled)."""
    off = disabled_pipelines(engine)
    if not off or not any(r.pipeline in off and r.enabled for r in cfg.rules):
        return cfg
    rules = [r.model_copy(update={"enabled": False}) if r.pipeline in off else r
             for r in cfg.rules]
    return cfg.model_copy(update={"rules": rules})
