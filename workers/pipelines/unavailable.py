"""The pipeline of a routed study whose model is not installed (stroke and fracture until
their models exist, or a site that routes to a pipeline it has no weights for).

It never reports success without a result: every study it is sent gets a delivered
"not analysed: no model is installed for this pipeline" report, counted as not analysed.

Options: `db_url` and `output_dir` (filled in by the node), `pipeline_kind` (`stroke`, `ich` or
`fracture`: which report family; default the pipeline's name), `model_version`.
"""

from __future__ import annotations

from typing import Any

from dicom_node.encode.types import Pipeline as EncodePipeline
from workers.errors import PermanentError
from workers.messages import JobContext, PipelineResult
from workers.pipelines.report import NodeFacts, Reporter, ReportSpec, placeholder_algorithm

_FAMILIES = {
    EncodePipeline.STROKE: ("MR", "acute infarct"),
    EncodePipeline.ICH: ("CT", "intracranial haemorrhage"),
    EncodePipeline.FRACTURE: ("DX", "fracture"),
}

REASON = "no_model"


def spec_for(name: str, kind: str) -> ReportSpec:
    """The report spec of pipeline `name` reporting as family `kind`."""
    try:
        family = EncodePipeline(kind)
    except ValueError:
        raise PermanentError(f"pipeline {name!r}: unknown report family {kind!r}; "
                             f"one of {[p.value for p in EncodePipeline]}") from None
    modality, target = _FAMILIES[family]
    return ReportSpec(name=name, kind=family, modality=modality, target_label=target)


class NoModelPipeline:
    """Answers every study with a not-analysed report: no model is installed."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        self.name = str(options.get("name", "unavailable"))
        self.model_version = str(options.get("model_version", f"{self.name}-none"))
        self.device = device
        spec = spec_for(self.name, str(options.get("pipeline_kind", self.name)))
        algorithm = placeholder_algorithm(self.name, self.model_version)
        self.reporter = Reporter(NodeFacts.from_options(options, self.name), spec,
                                 lambda: algorithm)

    def run(self, context: JobContext) -> PipelineResult:
        return self.not_analysed(
            context, f"no model is installed for the {self.name} pipeline "
            f"({self.reporter.spec.target_label} was not assessed)", REASON)

    def not_analysed(self, context: JobContext, reason: str, code: str) -> PipelineResult:
        return self.reporter.not_analysed(context, reason, code)


def fallback_reporter(options: dict[str, Any], device: str) -> NoModelPipeline | None:
    """A reporter for a pipeline whose own pipeline could not even be built (its model failed
    to load), from that pipeline's factory options (`name`, `model_version`, the node's facts):
    it writes the not-analysed report under the node's own identity. None when the pipeline has
    no report family (a custom or test pipeline) or no output folder."""
    if "db_url" not in options or "output_dir" not in options:
        return None
    try:
        return NoModelPipeline(device, options)
    except PermanentError:
        return None
