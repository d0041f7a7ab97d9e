"""The intracranial haemorrhage pipeline: select the axial non-contrast head CT, read it into a
volume, run the ICH model, and write SEG (when the model segments), SR, KOS, the FHIR Bundle and
the HL7 ORU before the job completes.

Options (from the `workers.pipelines.ich` spec; the node fills in the first three):
`db_url` (the instance index), `output_dir`, `model_paths`, `model` (registry id, default
`ich-demo`; `blast-ct` selects the BLAST-CT segmentation ensemble), `critical` (class keys that
raise the priority signal, default `any`), `warmup` (one forward pass at load, default true),
`predict` (extra keyword arguments for the model, e.g. `{n_models: 4}` for BLAST-CT).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import AlgorithmInfo
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.selection import select_ich, study_facts
from dicom_node.volume import read_headers, read_series
from inference.errors import PermanentInferenceError, TransientInferenceError
from inference.registry import ModelRegistry
from inference.types import Prediction, Volume
from workers.errors import PermanentError, TransientError
from workers.messages import JobContext, PipelineResult
from workers.pipelines import mapping
from workers.pipelines.report import NodeFacts, Reporter, ReportSpec, Summary

log = logging.getLogger(__name__)

SPEC = ReportSpec(name="ich", kind=EncodePipeline.ICH, modality="CT",
                  target_label="intracranial haemorrhage")


class IchPipeline:
    """Loaded once per worker process: the model stays warm between studies."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        facts = NodeFacts.from_options(options, "ich")
        paths = tuple(Path(p) for p in options.get("model_paths", ("models",)))
        self.name = str(options.get("name", "ich"))
        self.critical = tuple(options.get("critical", ("any", "intraparenchymal",
                                                       "extra_axial", "intraventricular")))
        self.registry = ModelRegistry(paths,
                                      device=device, warmup=bool(options.get("warmup", True)))
        self.predict_options = dict(options.get("predict", {}))
        self.model_id = str(options.get("model", "ich-demo"))
        try:
            self.model = self.registry.get(self.model_id)
        except PermanentInferenceError as exc:
            raise PermanentError(f"ich model {self.model_id!r} cannot be loaded: {exc}",
                                 reason="model_unavailable") from exc
        card = self.registry.card(self.model_id)
        self.model_version = str(options.get("model_version", card.version))
        if self.model_version != card.version:
            raise PermanentError(
                f"configured model version {self.model_version!r} but the card of "
                f"{self.model_id!r} says {card.version!r}", reason="model_version_mismatch")
        spec = ReportSpec(name=self.name, kind=SPEC.kind, modality=SPEC.modality,
                          target_label=SPEC.target_label)
        self.reporter = Reporter(facts, spec, self._algorithm)

    def run(self, context: JobContext) -> PipelineResult:
        paths = self.reporter.series_paths(context)
        headers = read_headers([p for ps in paths.values() for p in ps])
        selection = select_ich(study_facts(headers))
        choice = selection.series_for("ct")
        summary: Summary = {"selection": json.dumps(selection.record())}
        if choice is None:
            reasons = "; ".join(r for v in selection.verdicts for r in v.reasons) or "none"
            return self.reporter.not_analysed(
                context, f"no usable head CT series ({reasons})", "no_usable_series",
                headers, summary)
        try:
            volume = read_series(paths[choice.series_instance_uid])
        except DicomPermanentError as exc:
            code = getattr(exc, "reason", "unreadable_series")
            return self.reporter.not_analysed(
                context, f"series cannot be read: {exc}",
                code if isinstance(code, str) else "unreadable_series", headers, summary)
        array = volume.voxels
        prediction = self._predict(Volume.from_array(
            array, volume.spacing, tuple(r.sop_instance_uid for r in volume.slice_refs)))
        sources = [volume.headers[r.header_index] for r in volume.slice_refs]
        voxel_mm3 = float(volume.spacing[0] * volume.spacing[1] * volume.spacing[2])
        findings = mapping.dicom_findings(prediction, dcodes.BRAIN, voxel_mm3)
        fhir = mapping.fhir_findings(prediction, dcodes.BRAIN, self.critical)
        outputs = self.reporter.write(context, sources, findings, fhir,
                                      _conclusion(prediction))
        positive = list(prediction.positive)
        summary.update({"series": choice.series_instance_uid, "positive": ",".join(positive),
                        "slices": int(array.shape[0])})
        critical = any(k in self.critical for k in positive)
        return PipelineResult(outputs=outputs, summary=summary,
                              priority_flag="critical: ICH suspected" if critical else None)

    def not_analysed(self, context: JobContext, reason: str, code: str) -> PipelineResult:
        """The not-analysed report after a deterministic failure of `run`."""
        return self.reporter.not_analysed(context, reason, code)

    def _predict(self, volume: Volume) -> Prediction:
        try:
            return self.model.predict(volume, explain=True, **self.predict_options)
        except TransientInferenceError as exc:
            raise TransientError(f"inference: {exc}") from exc
        except PermanentInferenceError as exc:
            raise PermanentError(f"inference: {exc}", reason="model_input") from exc

    def _algorithm(self) -> AlgorithmInfo:
        card = self.registry.card(self.model_id)
        return AlgorithmInfo(name=card.name, version=card.version,
                             manufacturer=card.manufacturer, model_name=card.id,
                             weights_sha256=card.weights_sha256)


def _conclusion(prediction: Prediction) -> str:
    positive = [prediction.result(key).name for key in prediction.positive]
    if not positive:
        return "No intracranial haemorrhage detected by the AI model. AI-generated, not verified."
    return ("AI suspects intracranial haemorrhage: " + ", ".join(positive)
            + ". AI-generated, not verified; for prioritisation only.")
