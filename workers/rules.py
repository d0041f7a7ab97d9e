"""Routing rules as typed data.

A rule is a tree of conditions over the header facts of one series (`SeriesSummary`): tag
conditions at the leaves, `all` / `any` / `not` above them. Tags are named by their DICOM
keyword (PS3.6) so that a rule reads like the header it is tested against. Matching is
three-valued: a condition on a tag the series does not carry is *unknown*, never silently true
or false, unless the rule says what a missing tag means with `if_missing`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from workers.messages import Priority


class TagKind(StrEnum):
    TEXT = "text"
    SET = "set"
    NUMBER = "number"


#: Tag keyword -> (SeriesSummary attribute, kind). CallingAE / CalledAE are the association's AE
#: titles (PS3.8 9.3.2), not header attributes; InstanceCount is the number of instances received.
TAGS: dict[str, tuple[str, TagKind]] = {
    "Modality": ("modality", TagKind.TEXT),
    "BodyPartExamined": ("body_part_examined", TagKind.TEXT),
    "SeriesDescription": ("series_description", TagKind.TEXT),
    "ProtocolName": ("protocol_name", TagKind.TEXT),
    "CallingAE": ("calling_ae", TagKind.TEXT),
    "CalledAE": ("called_ae", TagKind.TEXT),
    "ImageType": ("image_type", TagKind.SET),
    "SOPClassUID": ("sop_class_uids", TagKind.SET),
    "InstanceCount": ("instance_count", TagKind.NUMBER),
    "SliceThickness": ("slice_thickness", TagKind.NUMBER),
}

_OPERATORS: dict[TagKind, frozenset[str]] = {
    TagKind.TEXT: frozenset({"equals", "in_", "matches"}),
    TagKind.SET: frozenset({"contains", "not_contains", "contains_any"}),
    TagKind.NUMBER: frozenset({"equals_number", "min", "max"}),
}


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class TagCondition(_Node):
    """One test of one tag. Exactly one operator is set, or `min` and/or `max` together:

    - text tags: `equals` / `in` (case-insensitive, surrounding blanks ignored, as for CS
      values, PS3.5 6.2) or `matches` (a regular expression that must match the whole value);
    - multi-valued tags (ImageType, SOPClassUID): `contains`, `not_contains`, `contains_any`;
    - numbers (InstanceCount, SliceThickness): `equals_number`, `min`, `max` (inclusive).

    `if_missing` says what the condition is when the series lacks the tag: `unknown` (default;
    the rule cannot match), or an explicit `true` / `false`.
    """

    tag: str
    equals: str | None = None
    in_: tuple[str, ...] | None = Field(default=None, alias="in")
    matches: str | None = None
    contains: str | None = None
    not_contains: str | None = None
    contains_any: tuple[str, ...] | None = None
    equals_number: float | None = None
    min: float | None = None
    max: float | None = None
    if_missing: Literal["unknown", "true", "false"] = "unknown"

    @field_validator("tag")
    @classmethod
    def _known_tag(cls, value: str) -> str:
        if value not in TAGS:
            raise ValueError(f"unknown tag {value!r}; known: {', '.join(sorted(TAGS))}")
        return value

    @field_validator("matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> TagCondition:
        used = {name for name in self.operator_names() if getattr(self, name) is not None}
        kind = TAGS[self.tag][1]
        if not used:
            raise ValueError(f"condition on {self.tag} has no operator")
        if len(used) > 1 and used != {"min", "max"}:
            raise ValueError(f"condition on {self.tag} has several operators: {sorted(used)}")
        wrong = used - _OPERATORS[kind]
        if wrong:
            raise ValueError(f"{sorted(wrong)} cannot test {self.tag} ({kind} tag)")
        return self

    @staticmethod
    def operator_names() -> tuple[str, ...]:
        return (
            "equals", "in_", "matches", "contains", "not_contains", "contains_any",
            "equals_number", "min", "max",
        )


class AllOf(_Node):
    """True when every child is true; false when any is false; otherwise unknown."""

    all: tuple[Condition, ...]


class AnyOf(_Node):
    """True when any child is true; false when every child is false; otherwise unknown."""

    any: tuple[Condition, ...]


class NotOf(_Node):
    """Negation; an unknown child stays unknown, so a missing tag cannot match through `not`."""

    not_: Condition = Field(alias="not")


def _discriminate(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("all", "any", "not", "not_"):
            if key in value:
                return "not" if key == "not_" else key
        return "tag"
    if isinstance(value, AllOf):
        return "all"
    if isinstance(value, AnyOf):
        return "any"
    return "not" if isinstance(value, NotOf) else "tag"


Condition = Annotated[
    Annotated[TagCondition, Tag("tag")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_discriminate),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class RoutingRule(_Node):
    """Route the series that satisfy `when` to `pipeline`. A study matches when at least
    `min_series` of its series match; the job receives the matching series."""

    name: str
    pipeline: str
    when: Condition
    priority: Priority = Priority.ROUTINE
    quiet_period_s: float = Field(default=10.0, ge=0)
    min_series: int = Field(default=1, ge=1)
    enabled: bool = True


class Exclusion(_Node):
    """Series that no rule may route (localizers, dose reports, secondary reformats...).
    An exclusion applies only when its condition is true; unknown does not exclude."""

    name: str
    when: Condition
