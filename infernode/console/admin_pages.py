"""Models (cards, per-pipeline enable / disable), Routing (rules and explain) and Configuration
(effective settings, secrets redacted; check-config findings)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from dicom_node.index.tables import instances
from infernode.console import switches
from infernode.console.config import Role
from infernode.console.web import Console
from workers import admin as job_admin
from workers.headers import studies_from_files
from workers.routing import StudyExplanation, Truth, explain

if TYPE_CHECKING:
    from infernode.node import Node

REDACTED = "(redacted)"
_SECRET_WORDS = ("token", "password", "secret", "private_key", "api_key")

_digests: dict[tuple[str, int, float], str] = {}


def _sha256(path: Path) -> str:
    """A file's SHA-256, remembered while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def model_cards(node: Node) -> tuple[list[dict[str, Any]], str | None]:
    """Every model card found, with its weights' checksum status, and the problem that
    stopped the listing (an invalid card, two models with one id), if any."""
    from inference.config import build_registry
    from inference.errors import InferenceError

    registry = build_registry(node.settings.inference)
    try:
        ids = registry.ids()
    except InferenceError as exc:
        return [], str(exc)
    cards = []
    for model_id in ids:
        card = registry.card(model_id)
        folder = registry.directory(model_id)
        status = "no weights (method)" if not card.weights.files else "ok"
        for f in card.weights.files:
            path = folder / f.path
            if not path.is_file():
                status = f"missing {f.path}"
            elif _sha256(path) != f.sha256:
                status = f"MISMATCH {f.path}"
        cards.append({"card": card, "directory": folder, "checksum": status,
                      "training_data": yaml.safe_dump(card.training_data, sort_keys=False),
                      "metrics": yaml.safe_dump(card.metrics, sort_keys=False)})
    return cards, None


def explain_study(node: Node, study_uid: str
                  ) -> tuple[StudyExplanation, dict[str, str], bool] | None:
    """The routing of a received study evaluated against the rules now configured, with a
    label per series, and whether the node routed it already (its recorded StudyReady; else
    the study as its stored headers describe it, without the association's AE titles); None
    when the node holds nothing of it."""
    study = job_admin.recorded_study(node.engine, study_uid)
    recorded = study is not None
    if study is None:
        with node.engine.connect() as conn:
            paths = [Path(r[0]) for r in conn.execute(sa.select(instances.c.path).where(
                instances.c.study_instance_uid == study_uid))]
        found = [s for s in studies_from_files(paths) if s.study_instance_uid == study_uid]
        if not found:
            return None
        study = found[0]
    cfg = node.settings.workers
    names = {s.series_instance_uid: f"{s.modality or '?'} '{s.series_description or ''}'"
             for s in study.series}
    return explain(study, cfg.rules, cfg.exclusions), names, recorded


def redact(value: Any, key: str = "") -> Any:
    """Settings as plain data with secrets replaced: values under secret-sounding keys,
    and the password of any URL."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    lowered = key.lower()
    if value not in (None, "", [], ()) and any(w in lowered for w in _SECRET_WORDS) \
            and not lowered.endswith(("_file", "file")):
        return REDACTED
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.password:
            netloc = f"{parts.username}:{REDACTED}@{parts.hostname}" + (
                f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def add_admin_pages(router: APIRouter, con: Console, node: Node) -> None:
    @router.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models(request: Request) -> Response:
        session = con.session(request)
        off = switches.disabled_pipelines(node.engine)
        pipelines = [{"name": name, "spec": spec, "enabled": name not in off}
                     for name, spec in sorted(node.settings.workers.pipelines.items())]
        cards, problem = model_cards(node)
        return con.render(request, session, "models.html", page="models", cards=cards,
                          problem=problem, pipelines=pipelines)

    @router.post("/models/{pipeline}/switch", include_in_schema=False)
    async def switch(request: Request, pipeline: str) -> Response:
        session, form = await con.post(request, Role.ADMIN)
        if pipeline not in node.settings.workers.pipelines:
            raise HTTPException(404, "no such pipeline")
        enabled = form.get("enabled") == "true"
        switches.set_enabled(node.engine, pipeline, enabled, session.user)
        con.record(request, session, "pipeline_enabled" if enabled else "pipeline_disabled",
                   subject=pipeline)
        return con.render(request, session, "message.html", title="Done",
                          message=f"pipeline {pipeline} {'enabled' if enabled else 'disabled'}"
                          " for new studies", back="/models")

    @router.get("/routing", response_class=HTMLResponse, include_in_schema=False)
    def routing(request: Request, study: str = "") -> Response:
        session = con.session(request)
        cfg = node.settings.workers
        rules = [yaml.safe_dump(r.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                                sort_keys=False) for r in cfg.rules]
        exclusions = [yaml.safe_dump(e.model_dump(mode="json", by_alias=True,
                                                  exclude_defaults=True), sort_keys=False)
                      for e in cfg.exclusions]
        found = explain_study(node, study.strip()) if study.strip() else None
        if study.strip():
            con.record(request, session, "routing_explain", subject=study.strip())
        return con.render(request, session, "routing.html", page="routing",
                          rules=list(zip(cfg.rules, rules, strict=True)),
                          exclusions=exclusions, study=study, explanation=found,
                          searched=bool(study.strip()), Truth=Truth)

    @router.get("/config", response_class=HTMLResponse, include_in_schema=False)
    def configuration(request: Request) -> Response:
        session = con.session(request, Role.ADMIN)
        from infernode.cli import config_findings

        errors, warnings = config_findings(node.settings)
        data = redact(node.settings.model_dump(mode="json"))
        if isinstance(data.get("database"), dict):
            from sqlalchemy.engine import make_url

            data["database"]["url"] = make_url(node.settings.database.url).render_as_string(
                hide_password=True)
        con.record(request, session, "config_view")
        return con.render(request, session, "config.html", page="config",
                          text=yaml.safe_dump(data, sort_keys=False), errors=errors,
                          warnings=warnings)
