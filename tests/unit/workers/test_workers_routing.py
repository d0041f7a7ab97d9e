"""The rule evaluator (three-valued, anchored, explained) and the default rules against
real-looking headers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from workers import samples
from workers.config import WorkersConfig, default_exclusions, default_rules
from workers.messages import Priority
from workers.routing import Truth, evaluate, explain, quiet_period_s, route
from workers.rules import RoutingRule, TagCondition


def _cond(data: dict[str, Any]) -> Any:
    return RoutingRule.model_validate({"name": "r", "pipeline": "p", "when": data}).when


def _truth(data: dict[str, Any], **series: Any) -> Truth:
    return evaluate(_cond(data), samples.series(**series)).truth


def test_text_operators_are_anchored_and_case_insensitive_where_dicom_says() -> None:
    assert _truth({"tag": "Modality", "equals": "ct"}) is Truth.TRUE
    assert _truth({"tag": "Modality", "in": ["MR", "CT "]}) is Truth.TRUE
    head = {"tag": "SeriesDescription", "matches": "Head.*"}
    assert _truth(head, series_description="Head 5mm axial") is Truth.TRUE
    # anchored: a match in the middle of the value is not a match
    assert _truth(head, series_description="No Head here") is Truth.FALSE
    assert _truth({"tag": "SeriesDescription", "matches": "Head"}) is Truth.FALSE


def test_multi_valued_and_numeric_operators() -> None:
    image_type = ("ORIGINAL", "PRIMARY", "AXIAL")
    assert _truth({"tag": "ImageType", "contains": "primary"}, image_type=image_type) is Truth.TRUE
    assert _truth({"tag": "ImageType", "not_contains": "LOCALIZER"},
                  image_type=image_type) is Truth.TRUE
    assert _truth({"tag": "ImageType", "contains_any": ["MPR", "MIP"]},
                  image_type=image_type) is Truth.FALSE
    assert _truth({"tag": "InstanceCount", "min": 10, "max": 40}, instance_count=40) is Truth.TRUE
    assert _truth({"tag": "InstanceCount", "min": 10}, instance_count=9) is Truth.FALSE
    assert _truth({"tag": "SliceThickness", "equals_number": 5}, slice_thickness=5.0) is Truth.TRUE


def test_a_missing_tag_never_matches_silently() -> None:
    body = {"tag": "BodyPartExamined", "equals": "HEAD"}
    verdict = evaluate(_cond(body), samples.series(body_part_examined=None))
    assert verdict.truth is Truth.UNKNOWN
    assert "BodyPartExamined missing" in verdict.decided_by
    # not(unknown) stays unknown: negation cannot turn a missing tag into a match
    assert _truth({"not": body}, body_part_examined=None) is Truth.UNKNOWN
    assert _truth({"tag": "ImageType", "not_contains": "LOCALIZER"}, image_type=()) is Truth.UNKNOWN
    assert _truth({"tag": "SliceThickness", "max": 5}, slice_thickness=None) is Truth.UNKNOWN
    assert _truth({"tag": "CalledAE", "equals": "NODE"}, called_ae="  ") is Truth.UNKNOWN
    # all: a false child wins over unknown; any: a true child wins over unknown
    assert _truth({"all": [body, {"tag": "Modality", "equals": "MR"}]},
                  body_part_examined=None) is Truth.FALSE
    assert _truth({"any": [body, {"tag": "Modality", "equals": "CT"}]},
                  body_part_examined=None) is Truth.TRUE
    # ... and the rule author can say what missing means, explicitly
    lenient = {**body, "if_missing": "true"}
    assert _truth(lenient, body_part_examined=None) is Truth.TRUE


def test_explanation_names_the_deciding_condition() -> None:
    rule = RoutingRule.model_validate({
        "name": "ct-head", "pipeline": "ich", "when": {"all": [
            {"tag": "Modality", "equals": "CT"},
            {"tag": "CallingAE", "in": ["CT01", "CT02"]},
            {"tag": "SliceThickness", "max": 3.0},
        ]}})
    study = samples.study(samples.series(calling_ae="CT09"))
    (exp,) = explain(study, [rule]).rules
    assert not exp.matched
    assert "CallingAE in CT01\\CT02 [value 'CT09'] -> false" in exp.reason
    matching = samples.study(samples.series(slice_thickness=2.5))
    (ok,) = explain(matching, [rule]).rules
    assert ok.matched and ok.series[0].decided_by == "all of 3 conditions true"


def test_invalid_rules_are_refused_on_load() -> None:
    with pytest.raises(ValidationError, match="unknown tag"):
        TagCondition.model_validate({"tag": "PatientName", "equals": "x"})
    with pytest.raises(ValidationError, match="cannot test Modality"):
        TagCondition.model_validate({"tag": "Modality", "min": 1})
    with pytest.raises(ValidationError, match="several operators"):
        TagCondition.model_validate({"tag": "Modality", "equals": "CT", "matches": "C.*"})
    with pytest.raises(ValidationError):
        TagCondition.model_validate({"tag": "SeriesDescription", "matches": "(unclosed"})
    with pytest.raises(ValidationError, match="unknown pipelines"):
        WorkersConfig.model_validate({"rules": [
            {"name": "x", "pipeline": "nope", "when": {"tag": "Modality", "equals": "CT"}}]})


def _pipelines(study: Any) -> dict[str, tuple[Priority, int]]:
    cfg = WorkersConfig()
    return {d.pipeline: (d.priority, len(d.series_instance_uids))
            for d in route(study, cfg.rules, cfg.exclusions)}


def test_default_rules_on_real_looking_studies() -> None:
    assert _pipelines(samples.ct_head_study()) == {"ich": (Priority.STAT, 1)}
    # DWI and ADC go to stroke; localizer and FLAIR do not
    assert _pipelines(samples.mr_stroke_study()) == {"stroke": (Priority.STAT, 2)}
    assert _pipelines(samples.dx_wrist_study()) == {"fracture": (Priority.ROUTINE, 2)}


@pytest.mark.parametrize("series, exclusion", [
    (samples.ct_localizer(), "localizer"),
    (samples.ct_dose_report(), "dose report"),
    (samples.ct_dose_screen(), "dose report"),
    (samples.ct_reformat(), "secondary or reformat"),
    (samples.series(modality="SEG", image_type=("DERIVED", "PRIMARY")), "non-image object"),
])
def test_localizers_dose_reports_and_reformats_are_never_routed(series: Any,
                                                                exclusion: str) -> None:
    exp = explain(samples.study(series), default_rules(), default_exclusions())
    assert not exp.routed
    assert [hit.exclusion for hit in exp.excluded] == [exclusion]


def test_head_ct_without_body_part_routes_by_description_or_is_explained() -> None:
    described = samples.study(samples.series(body_part_examined=None,
                                             series_description="Brain 5mm", protocol_name=None))
    assert _pipelines(described) == {"ich": (Priority.STAT, 1)}
    bare = samples.study(samples.series(body_part_examined=None, series_description=None,
                                        protocol_name=None))
    cfg = WorkersConfig()
    exp = explain(bare, cfg.rules, cfg.exclusions)
    assert not exp.routed
    assert "BodyPartExamined missing" in exp.not_routed_reason()
    thin_scout = samples.study(samples.series(instance_count=3))
    assert _pipelines(thin_scout) == {}


def test_two_rules_for_one_pipeline_merge_and_stat_wins() -> None:
    rules = [RoutingRule.model_validate(r) for r in (
        {"name": "a", "pipeline": "p", "quiet_period_s": 5,
         "when": {"tag": "SeriesDescription", "matches": "A.*"}},
        {"name": "b", "pipeline": "p", "priority": "stat", "quiet_period_s": 30,
         "when": {"tag": "SeriesDescription", "matches": "B.*"}},
    )]
    study = samples.study(samples.series(series_description="A1"),
                          samples.series(series_description="B1"))
    (decision,) = route(study, rules)
    assert decision.priority is Priority.STAT and decision.rules == ("a", "b")
    assert len(decision.series_instance_uids) == 2 and decision.quiet_period_s == 30
    assert quiet_period_s(samples.series(series_description="B2"), rules) == 30
    assert quiet_period_s(samples.series(series_description="C"), rules, default=7) == 7


def test_config_round_trips_through_json() -> None:
    cfg = WorkersConfig()
    again = WorkersConfig.model_validate_json(cfg.model_dump_json(by_alias=True))
    assert again == cfg


def test_the_documented_example_configuration_loads() -> None:
    import re as regex
    from pathlib import Path

    import yaml

    doc = (Path(__file__).resolve().parents[3] / "docs" / "ROUTING.md").read_text()
    block = regex.search(r"```yaml\n(.*?)```", doc, regex.S)
    assert block is not None
    cfg = WorkersConfig.model_validate(yaml.safe_load(block.group(1))["workers"])
    ct = samples.study(samples.series(slice_thickness=5.0))
    assert [d.pipeline for d in route(ct, cfg.rules, cfg.exclusions)] == ["ich"]
    ed = samples.study(samples.series(modality="DX", calling_ae="ED_DR1"))
    (decision,) = route(ed, cfg.rules, cfg.exclusions)
    assert decision.priority is Priority.STAT and decision.rules == (
        "fracture-from-ed", "fracture-radiograph")
