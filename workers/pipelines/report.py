"""Writing a job's outputs, the same way for every pipeline: the DICOM results (SEG, SR, KOS),
the FHIR R4 Bundle and the HL7 v2 ORU, stored before the job completes.

`Reporter` also writes the "not analysed: reason" report of a routed study that could not be
analysed (no usable series, a series that cannot be read, a deterministic failure anywhere in
the pipeline, no model installed). It needs only the instance index and the output folder, not
the model, so even a pipeline whose model failed to load still answers every study it was sent.
The "indeterminate - read as usual: reason" report (the input failed the model's quality gate,
or its prediction was unstable) is written and delivered the same way: never a silent negative.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydicom.dataset import Dataset
from sqlalchemy import Engine

from dicom_node.encode import codes as dcodes
from dicom_node.encode import encode_outputs
from dicom_node.encode.sr import INDETERMINATE_TEXT
from dicom_node.encode.types import (
    AlgorithmInfo,
    EncodeContext,
    Finding,
    Indeterminate,
    NotAnalysed,
)
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.index.store import IndexStore
from dicom_node.volume import read_headers
from hl7_fhir.config import ReportingConfig
from hl7_fhir.fhir.bundle import build_report_bundle
from hl7_fhir.hl7v2.oru import build_oru
from hl7_fhir.types import DeviceInfo, EncodeOptions
from hl7_fhir.types import Finding as FhirFinding
from workers.db import make_engine, utcnow
from workers.errors import PermanentError
from workers.failures import shape_reason
from workers.messages import JobContext, OutputRef, PipelineResult, ReportOutcome
from workers.pipelines import mapping
from workers.pipelines.files import write_dataset, write_output
from workers.pipelines.predecessor import previous_sr

log = logging.getLogger(__name__)

Summary = dict[str, str | int | float | bool]

_NOT_FOR_DIAGNOSIS = "AI-generated, not verified."


@dataclass(frozen=True)
class ReportSpec:
    """What the reports of one pipeline say about the study, whatever its model."""

    name: str
    kind: EncodePipeline
    modality: str
    target_label: str
    """What the pipeline screens for, in words ("intracranial haemorrhage")."""


@dataclass(frozen=True)
class NodeFacts:
    """Where a pipeline finds the index and writes its outputs (filled in by the node)."""

    db_url: str
    output_dir: Path
    reporting: EncodeOptions = field(default_factory=EncodeOptions)

    @classmethod
    def from_options(cls, options: dict[str, Any], pipeline: str) -> NodeFacts:
        """From a pipeline's options (`db_url`, `output_dir`, `reporting`: the node's
        `reporting` settings section)."""
        try:
            db_url, output_dir = str(options["db_url"]), Path(options["output_dir"])
        except KeyError as exc:
            raise PermanentError(f"{pipeline} pipeline option {exc} is not configured") from exc
        try:
            reporting = ReportingConfig.model_validate(options.get("reporting") or {})
            encode = reporting.encode_options()
        except ValidationError as exc:
            raise PermanentError(f"{pipeline} pipeline: invalid reporting settings: {exc}",
                                 reason="configuration") from exc
        return cls(db_url, output_dir, encode)


def placeholder_algorithm(pipeline: str, version: str) -> AlgorithmInfo:
    """The identity written when no model ran: the node itself, for this pipeline."""
    digest = hashlib.sha256(f"infernode:no-model:{pipeline}:{version}".encode()).hexdigest()
    return AlgorithmInfo(name=f"InferNode {pipeline} (no model)"[:64], version=version[:64],
                         manufacturer="InferNode", model_name=f"{pipeline}-none"[:64],
                         weights_sha256=digest)


class Reporter:
    """Writes results and not-analysed reports of one pipeline into
    `<output_dir>/<study>/<name>`."""

    def __init__(self, facts: NodeFacts, spec: ReportSpec,
                 algorithm: Callable[[], AlgorithmInfo],
                 engine: Engine | None = None) -> None:
        self.facts = facts
        self.spec = spec
        self._algorithm = algorithm
        self.engine = engine if engine is not None else make_engine(facts.db_url)

    def series_paths(self, context: JobContext) -> dict[str, list[str]]:
        """Spool paths of the job's series, from the instance index."""
        index = IndexStore(self.engine)
        return {s.series_instance_uid: index.series_paths(s.series_instance_uid)
                for s in context.series}

    def write(self, context: JobContext, sources: Sequence[Dataset],
              findings: Sequence[Finding] | NotAnalysed, fhir: Sequence[FhirFinding],
              conclusion: str) -> tuple[OutputRef, ...]:
        """Encode and store every output of the job; returns what was stored."""
        algorithm = self._algorithm()
        earlier = previous_sr(self.engine, context)
        ctx = EncodeContext.for_job(context.study_instance_uid, self.spec.kind, algorithm,
                                    utcnow, amendment=context.amendment,
                                    predecessors=(earlier,) if earlier is not None else ())
        encoded = encode_outputs(sources, findings, ctx)
        folder = self.facts.output_dir / context.study_instance_uid / self.spec.name
        folder.mkdir(parents=True, exist_ok=True)
        refs = []
        for ds in encoded.datasets():
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            write_dataset(path, ds)
            refs.append(OutputRef(kind="dicom", uid=str(ds.SOPInstanceUID), path=str(path)))
        procedure = dcodes.procedure_for_modality(self.spec.modality)
        study = mapping.study_facts(sources, procedure)
        device = DeviceInfo(name=algorithm.name, version=algorithm.version,
                            manufacturer=algorithm.manufacturer,
                            device_uid=ctx.uids.device_uid(algorithm.weights_sha256))
        bundle = build_report_bundle(study, list(fhir), device, conclusion, utcnow,
                                     options=self.facts.reporting)
        bundle_path = folder / "report-bundle.json"
        bundle_json = bundle.model_dump_json(exclude_none=True).encode("utf-8")
        write_output(bundle_path, lambda out: out.write(bundle_json))
        refs.append(OutputRef(kind="fhir-bundle", uid=ctx.uids.uid("fhir-bundle"),
                              path=str(bundle_path)))
        oru_uid = ctx.uids.uid("hl7-oru")
        oru = build_oru(study, list(fhir), device, utcnow, control_id=oru_uid[-20:],
                        conclusion=conclusion, options=self.facts.reporting)
        oru_path = folder / "report.hl7"
        write_output(oru_path, lambda out: out.write(oru.encode("utf-8")))
        refs.append(OutputRef(kind="hl7-oru", uid=oru_uid, path=str(oru_path)))
        return tuple(refs)

    def not_analysed(self, context: JobContext, reason: str, code: str,
                     headers: Sequence[Dataset] | None = None,
                     summary: Summary | None = None) -> PipelineResult:
        """The "not analysed: reason" report of the study, delivered like any result.

        `headers` are the study's headers when the caller has read them already; otherwise
        they are read from the index (files that cannot be read are left out).

        Raises:
            PermanentError: not one instance of the job's series can be read.
        """
        text = shape_reason(reason)
        log.info("job %s not analysed (%s)", context.job_id, code)
        if headers is None:
            headers = self._readable_headers(context)
        if not headers:
            raise PermanentError("no readable instance of the routed series is in the index",
                                 reason="no_instances")
        own = [h for h in headers if h.get("Modality") == self.spec.modality]
        sources = own or list(headers)
        conclusion = f"Not analysed: {text}. {_NOT_FOR_DIAGNOSIS}"
        outputs = self.write(context, sources, NotAnalysed(text), [], conclusion)
        out = dict(summary or {})
        out["not_analysed"] = text
        return PipelineResult(outputs=outputs, summary=out,
                              outcome=ReportOutcome.NOT_ANALYSED, reason=code[:64])

    def indeterminate(self, context: JobContext, reason: str, code: str,
                      sources: Sequence[Dataset], summary: Summary | None = None
                      ) -> PipelineResult:
        """The "indeterminate - read as usual: reason" report on the images the model was
        given (`sources`), delivered like any result (SR, FHIR, ORU). `code` is the short
        reason (``quality_gate``, ``uncertain``) recorded with the outcome."""
        text = shape_reason(reason)
        log.info("job %s indeterminate (%s)", context.job_id, code)
        conclusion = f"{INDETERMINATE_TEXT}: {text}. {_NOT_FOR_DIAGNOSIS}"
        outputs = self.write(context, sources, Indeterminate(text), [], conclusion)
        out = dict(summary or {})
        out["indeterminate"] = text
        return PipelineResult(outputs=outputs, summary=out,
                              outcome=ReportOutcome.INDETERMINATE, reason=code[:64])

    def _readable_headers(self, context: JobContext) -> list[Dataset]:
        headers: list[Dataset] = []
        for paths in self.series_paths(context).values():
            for path in paths:
                try:
                    headers.extend(read_headers([path]))
                except DicomPermanentError:
                    continue
        return headers
