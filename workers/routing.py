"""The routing decision: a pure function from a completed study to the pipelines that apply,
with an explanation of why each rule matched or not.

Three-valued logic (true / false / unknown) keeps a missing tag from matching silently: a leaf
on a tag the series lacks is unknown, `not unknown` is unknown, and only a rule that is *true*
routes. Each verdict names the leaf condition that decided it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from dicom_node.events import SeriesSummary, StudyReady
from workers.messages import Priority
from workers.rules import TAGS, AllOf, Condition, Exclusion, NotOf, RoutingRule, TagCondition


class Truth(StrEnum):
    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    truth: Truth
    decided_by: str


def _fmt(value: object) -> str:
    if isinstance(value, tuple):
        return "\\".join(str(v) for v in value) or "(empty)"
    return repr(value)


def _describe(cond: TagCondition) -> str:
    for name in TagCondition.operator_names():
        value = getattr(cond, name)
        if value is None or name in ("min", "max"):
            continue
        return f"{cond.tag} {name.rstrip('_')} {_fmt(value) if name != 'matches' else repr(value)}"
    bounds = [f">= {cond.min:g}" if cond.min is not None else "",
              f"<= {cond.max:g}" if cond.max is not None else ""]
    return f"{cond.tag} " + " and ".join(b for b in bounds if b)


def _norm(text: str) -> str:
    return text.strip().upper()


def _test(cond: TagCondition, value: object) -> bool:
    if cond.equals is not None:
        return _norm(str(value)) == _norm(cond.equals)
    if cond.in_ is not None:
        return _norm(str(value)) in {_norm(v) for v in cond.in_}
    if cond.matches is not None:
        return re.fullmatch(cond.matches, str(value)) is not None
    if isinstance(value, tuple):
        items = {_norm(str(v)) for v in value}
        if cond.contains is not None:
            return _norm(cond.contains) in items
        if cond.not_contains is not None:
            return _norm(cond.not_contains) not in items
        assert cond.contains_any is not None
        return bool(items & {_norm(v) for v in cond.contains_any})
    number = float(value)  # type: ignore[arg-type]
    if cond.equals_number is not None:
        return number == cond.equals_number
    low_ok = cond.min is None or number >= cond.min
    return low_ok and (cond.max is None or number <= cond.max)


def _leaf(cond: TagCondition, series: SeriesSummary) -> Verdict:
    value = getattr(series, TAGS[cond.tag][0])
    text = _describe(cond)
    if value is None or value == () or (isinstance(value, str) and not value.strip()):
        truth = Truth(cond.if_missing)
        return Verdict(truth, f"{cond.tag} missing (if_missing={cond.if_missing}) for: {text}")
    result = Truth.TRUE if _test(cond, value) else Truth.FALSE
    return Verdict(result, f"{text} [value {_fmt(value)}] -> {result}")


def evaluate(cond: Condition, series: SeriesSummary) -> Verdict:
    """Evaluate one condition tree over one series (Kleene three-valued logic)."""
    if isinstance(cond, TagCondition):
        return _leaf(cond, series)
    if isinstance(cond, NotOf):
        inner = evaluate(cond.not_, series)
        flipped = {Truth.TRUE: Truth.FALSE, Truth.FALSE: Truth.TRUE}.get(inner.truth, Truth.UNKNOWN)
        return Verdict(flipped, f"not ({inner.decided_by})")
    children = [evaluate(c, series) for c in (cond.all if isinstance(cond, AllOf) else cond.any)]
    deciding, other = (
        (Truth.FALSE, Truth.TRUE) if isinstance(cond, AllOf) else (Truth.TRUE, Truth.FALSE)
    )
    for wanted in (deciding, Truth.UNKNOWN):
        for verdict in children:
            if verdict.truth is wanted:
                return verdict
    label = "all" if isinstance(cond, AllOf) else "any"
    return Verdict(other, f"{label} of {len(children)} conditions {other}")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeriesVerdict(_Model):
    series_instance_uid: str
    truth: Truth
    decided_by: str


class RuleExplanation(_Model):
    rule: str
    pipeline: str
    matched: bool
    reason: str
    series: tuple[SeriesVerdict, ...]


class ExclusionHit(_Model):
    series_instance_uid: str
    exclusion: str
    decided_by: str


class RouteDecision(_Model):
    """One pipeline to run on a study, merged over every rule that selected it."""

    pipeline: str
    priority: Priority
    rules: tuple[str, ...]
    series_instance_uids: tuple[str, ...]
    quiet_period_s: float


class StudyExplanation(_Model):
    study_instance_uid: str
    excluded: tuple[ExclusionHit, ...]
    rules: tuple[RuleExplanation, ...]
    decisions: tuple[RouteDecision, ...]

    @property
    def routed(self) -> bool:
        return bool(self.decisions)

    def not_routed_reason(self) -> str:
        """One line saying why nothing applies (empty when the study is routed)."""
        if self.routed:
            return ""
        if not self.rules:
            return "no routing rules are enabled"
        parts = [f"{r.rule}: {r.reason}" for r in self.rules]
        return "no rule matched; " + "; ".join(parts)


def _exclusion_for(series: SeriesSummary, exclusions: Sequence[Exclusion]) -> ExclusionHit | None:
    for exclusion in exclusions:
        verdict = evaluate(exclusion.when, series)
        if verdict.truth is Truth.TRUE:
            return ExclusionHit(
                series_instance_uid=series.series_instance_uid,
                exclusion=exclusion.name,
                decided_by=verdict.decided_by,
            )
    return None


def _explain_rule(
    rule: RoutingRule, candidates: Sequence[SeriesSummary], excluded: dict[str, ExclusionHit]
) -> RuleExplanation:
    verdicts = []
    for series in candidates:
        hit = excluded.get(series.series_instance_uid)
        if hit is not None:
            verdicts.append(SeriesVerdict(series_instance_uid=series.series_instance_uid,
                                          truth=Truth.FALSE,
                                          decided_by=f"excluded by {hit.exclusion}"))
            continue
        verdict = evaluate(rule.when, series)
        verdicts.append(SeriesVerdict(series_instance_uid=series.series_instance_uid,
                                      truth=verdict.truth, decided_by=verdict.decided_by))
    hits = [v for v in verdicts if v.truth is Truth.TRUE]
    matched = len(hits) >= rule.min_series
    if matched:
        reason = f"{len(hits)} series matched"
    elif not verdicts:
        reason = "the study has no series"
    else:
        # the series that says most about why: a value that failed, then a missing tag, then
        # an exclusion
        failing = [v for v in verdicts if v.truth is not Truth.TRUE]
        first = min(failing, key=lambda v: (v.decided_by.startswith("excluded by"),
                                            v.truth is Truth.UNKNOWN))
        reason = f"{len(hits)} of min {rule.min_series} series matched; {first.decided_by}"
    return RuleExplanation(rule=rule.name, pipeline=rule.pipeline, matched=matched,
                           reason=reason, series=tuple(verdicts))


def explain(
    study: StudyReady, rules: Sequence[RoutingRule], exclusions: Sequence[Exclusion] = ()
) -> StudyExplanation:
    """Evaluate every enabled rule against every series of `study`; pure and deterministic."""
    excluded: dict[str, ExclusionHit] = {}
    for series in study.series:
        hit = _exclusion_for(series, exclusions)
        if hit is not None:
            excluded[series.series_instance_uid] = hit
    explanations = tuple(_explain_rule(r, study.series, excluded) for r in rules if r.enabled)
    merged: dict[str, RouteDecision] = {}
    for rule in (r for r in rules if r.enabled):
        exp = next(e for e in explanations if e.rule == rule.name)
        if not exp.matched:
            continue
        uids = tuple(v.series_instance_uid for v in exp.series if v.truth is Truth.TRUE)
        prior = merged.get(rule.pipeline)
        if prior is None:
            merged[rule.pipeline] = RouteDecision(pipeline=rule.pipeline, priority=rule.priority,
                                                  rules=(rule.name,), series_instance_uids=uids,
                                                  quiet_period_s=rule.quiet_period_s)
            continue
        stat = Priority.STAT in (prior.priority, rule.priority)
        merged[rule.pipeline] = RouteDecision(
            pipeline=rule.pipeline,
            priority=Priority.STAT if stat else Priority.ROUTINE,
            rules=(*prior.rules, rule.name),
            series_instance_uids=tuple(dict.fromkeys((*prior.series_instance_uids, *uids))),
            quiet_period_s=max(prior.quiet_period_s, rule.quiet_period_s),
        )
    return StudyExplanation(study_instance_uid=study.study_instance_uid,
                            excluded=tuple(excluded.values()), rules=explanations,
                            decisions=tuple(merged.values()))


def route(
    study: StudyReady, rules: Sequence[RoutingRule], exclusions: Sequence[Exclusion] = ()
) -> list[RouteDecision]:
    """The pipelines that apply to `study`, one decision per pipeline."""
    return list(explain(study, rules, exclusions).decisions)


def quiet_period_s(
    series: SeriesSummary,
    rules: Sequence[RoutingRule],
    exclusions: Sequence[Exclusion] = (),
    default: float = 10.0,
) -> float:
    """How long study assembly should wait for more instances of a series still arriving: the
    longest quiet period of the rules that could still route it (true or unknown so far)."""
    if _exclusion_for(series, exclusions) is not None:
        return default
    periods = [r.quiet_period_s for r in rules
               if r.enabled and evaluate(r.when, series).truth is not Truth.FALSE]
    return max(periods, default=default)
