"""Ground truth from the site's final reports: a report labelled positive or negative for what
a pipeline screens for, by configurable rules.

Order of the rules: coded findings first (a code the site's reporting system attaches, from
OBX coded values or a DiagnosticReport's conclusionCode), then keywords in the report text with
negation handling ("no evidence of haemorrhage", "without fracture", "negative for ..."), then
phrases of a normal report. A report none of them decides is left unlabelled (None), never
guessed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class FinalReport:
    """A final report as received: no patient data beyond what matching needs (the accession
    number, hashed before anything is stored)."""

    source: str  # hl7 | fhir
    report_id: str
    accession: str
    text: str
    codes: tuple[tuple[str, str], ...] = ()  # (system, code)
    reported_at: datetime | None = None
    status: str = "final"


@dataclass(frozen=True)
class Label:
    """The verdict of the rules: `positive` True / False, or None when they cannot tell;
    `rule` says which rule decided (no report text)."""

    positive: bool | None
    rule: str
    evidence: tuple[str, ...] = field(default=())


DEFAULT_NEGATIONS = ("no", "not", "without", "negative for", "no evidence of", "no sign of",
                     "no signs of", "free of", "absence of", "ruled out", "rules out", "nor")
DEFAULT_POST_NEGATIONS = ("ruled out", "excluded", "is not seen", "not seen", "not identified",
                          "not present", "absent", "has resolved", "resolved")
_PIVOTS = ("but", "however", "although", "except", "apart from", "though")


class LabelRules(BaseModel):
    """How one pipeline's final reports are labelled (settings: `hl7_fhir.label_rules`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    positive_codes: list[str] = Field(default_factory=list, description=(
        "codes meaning the finding is present, as CODE or SYSTEM|CODE (e.g. SNOMED 50960005)"))
    negative_codes: list[str] = Field(default_factory=list, description=(
        "codes meaning the finding is absent"))
    keywords: list[str] = Field(default_factory=list, description=(
        "words or phrases naming the finding (case-insensitive, whole words)"))
    negations: list[str] = Field(default_factory=lambda: list(DEFAULT_NEGATIONS), description=(
        "cues before a keyword (same sentence, within negation_window words) that negate it"))
    post_negations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_POST_NEGATIONS), description=(
            "cues after a keyword (same sentence, within negation_window words) that negate "
            "it: \"haemorrhage is not seen\", \"fracture excluded\""))
    negation_window: int = Field(default=6, ge=1, le=20)
    normal_phrases: list[str] = Field(default_factory=lambda: [
        "no acute intracranial abnormality", "no acute abnormality", "normal study",
        "unremarkable"], description="phrases of a normal report: negative when no keyword "
        "is mentioned")


_SENTENCE = re.compile(r"[.;:!?\n\r]+")
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _find(words: Sequence[str], phrase: Sequence[str]) -> list[int]:
    n = len(phrase)
    return [i for i in range(len(words) - n + 1) if list(words[i:i + n]) == list(phrase)]


def _negated(words: Sequence[str], start: int, length: int, rules: LabelRules) -> bool:
    """A negation cue ends within the window before the keyword at `start`, or one begins
    within the window after it, with no pivot word between."""
    after = list(words[start + length:start + length + rules.negation_window + 3])
    for pivot in _PIVOTS:
        hits = _find(after, _words(pivot))
        if hits:
            after = after[:hits[0]]
    for cue in rules.post_negations:
        hits = _find(after, _words(cue))
        if hits and hits[0] < rules.negation_window:
            return True
    lo = max(0, start - rules.negation_window - 3)
    before = list(words[lo:start])
    for pivot in _PIVOTS:
        hits = _find(before, _words(pivot))
        if hits:
            before = before[hits[-1] + len(_words(pivot)):]
    for cue in rules.negations:
        cue_words = _words(cue)
        for hit in _find(before, cue_words):
            if len(before) - (hit + len(cue_words)) <= rules.negation_window:
                return True
    return False


def _code_matches(wanted: Sequence[str], codes: Sequence[tuple[str, str]]) -> str | None:
    for system, code in codes:
        for item in wanted:
            want_system, _, want_code = item.rpartition("|")
            if code == want_code and (not want_system or want_system == system):
                return item
    return None


def label_report(report: FinalReport, rules: LabelRules) -> Label:
    """Label `report` by `rules` (module docstring for the order)."""
    hit = _code_matches(rules.positive_codes, report.codes)
    if hit is not None:
        return Label(True, f"code {hit}")
    hit = _code_matches(rules.negative_codes, report.codes)
    if hit is not None:
        return Label(False, f"code {hit}")
    affirmed: list[str] = []
    negated: list[str] = []
    for sentence in _SENTENCE.split(report.text):
        words = _words(sentence)
        for keyword in rules.keywords:
            for start in _find(words, _words(keyword)):
                negation = _negated(words, start, len(_words(keyword)), rules)
                (negated if negation else affirmed).append(keyword)
    if affirmed:
        return Label(True, f"keyword {affirmed[0]}", tuple(sorted(set(affirmed))))
    if negated:
        return Label(False, f"negated keyword {negated[0]}", tuple(sorted(set(negated))))
    lowered = " ".join(_words(report.text))
    for phrase in rules.normal_phrases:
        if f" {' '.join(_words(phrase))} " in f" {lowered} ":
            return Label(False, f"normal phrase {phrase}")
    return Label(None, "no rule decided")


_ACCESSION_TYPE = ("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN")


def _accession(resource: Mapping[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if not isinstance(ident, Mapping):
            continue
        for coding in (ident.get("type") or {}).get("coding") or []:
            if (coding.get("system"), coding.get("code")) == _ACCESSION_TYPE and ident.get(
                    "value"):
                return str(ident["value"])
    return None


def _presented_text(resource: Mapping[str, Any]) -> list[str]:
    texts = []
    for form in resource.get("presentedForm") or []:
        if (isinstance(form, Mapping) and str(form.get("contentType", "")).startswith(
                "text/plain") and form.get("data")):
            try:
                texts.append(base64.b64decode(str(form["data"])).decode("utf-8", "replace"))
            except ValueError:
                continue
    return texts


def final_report_from_fhir(resource: Mapping[str, Any]) -> FinalReport | None:
    """A final DiagnosticReport (FHIR R4) as a `FinalReport`: accession from an identifier of
    type ACSN (v2-0203), text from `conclusion` and text/plain `presentedForm`, codes from
    `conclusionCode`; None when it is not final or corrected, or names no accession."""
    if resource.get("resourceType") != "DiagnosticReport":
        return None
    status = str(resource.get("status", ""))
    if status not in ("final", "corrected", "amended"):
        return None
    accession = _accession(resource)
    if accession is None:
        return None
    codes = tuple((str(c.get("system", "")), str(c.get("code", "")))
                  for concept in resource.get("conclusionCode") or []
                  for c in (concept.get("coding") or []) if c.get("code"))
    text = "\n".join([str(resource.get("conclusion") or ""), *_presented_text(resource)])
    issued = resource.get("issued")
    when = None
    if isinstance(issued, str):
        try:
            when = datetime.fromisoformat(issued.replace("Z", "+00:00"))
        except ValueError:
            when = None
    return FinalReport(source="fhir", report_id=str(resource.get("id") or accession),
                       accession=accession, text=text.strip(), codes=codes,
                       reported_at=when, status=status)
