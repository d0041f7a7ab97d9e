"""`/api/monitoring`: a reader's agree / disagree with a result (POST, for the console and
other clients) and the agreement figures (GET). Both need `Authorization: Bearer <token>`
with a token of `monitoring.feedback_tokens` or `web.api_tokens`; with none configured they
answer 401."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from infernode.security import bearer_matches
from workers.db import utcnow
from workers.monitoring.agreement import GROUPINGS, UnknownJob, agreement, record_feedback


class FeedbackIn(BaseModel):
    """A reader's verdict on one job's result (no patient data: a job id and a user name)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(min_length=1, max_length=36)
    agree: bool
    reader: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(default=None, max_length=2000)


def create_monitoring_router(engine: Engine, tokens: tuple[str, ...]) -> APIRouter:
    router = APIRouter(prefix="/api/monitoring", tags=["monitoring"])
    allowed = tuple(t.encode() for t in tokens if t)

    def check(authorization: str | None) -> None:
        if bearer_matches(authorization or "", allowed) is None:
            raise HTTPException(401, "a monitoring token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    @router.post("/feedback", status_code=201)
    def feedback(body: FeedbackIn,
                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        check(authorization)
        try:
            record_feedback(engine, body.job_id, body.agree, body.reader, utcnow(),
                            body.comment)
        except UnknownJob as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"job_id": body.job_id, "agree": body.agree, "reader": body.reader}

    @router.get("/agreement")
    def agreement_figures(
        authorization: Annotated[str | None, Header()] = None,
        by: Annotated[str, Query()] = "pipeline,model_version",
        days: Annotated[int, Query(ge=1, le=3660)] = 90,
    ) -> list[dict[str, Any]]:
        check(authorization)
        keys = [k for k in by.split(",") if k]
        if set(keys) - set(GROUPINGS):
            raise HTTPException(422, f"by: choose from {', '.join(GROUPINGS)}")
        now = datetime.now(UTC)
        groups = agreement(engine, now - timedelta(days=days), now + timedelta(days=1), keys)
        return [{"pipeline": g.pipeline, "model_version": g.model_version,
                 "scanner": g.scanner, "month": g.month, "tp": g.tp, "fp": g.fp, "fn": g.fn,
                 "tn": g.tn, "ppv": g.ppv, "sensitivity": g.sensitivity,
                 "specificity": g.specificity, "intervals": g.intervals()} for g in groups]

    return router
