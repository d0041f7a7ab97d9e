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

from pydicom.dataset import Dataset
from sqlalchemy import create_engine

from dicom_node.encode import codes as dcodes
from dicom_node.encode import encode_outputs
from dicom_node.encode.types import AlgorithmInfo, EncodeContext, NotAnalysed
from dicom_node.encode.types import Pipeline as EncodePipeline
from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.index.store import IndexStore
from dicom_node.selection import select_ich, study_facts
from dicom_node.volume import read_headers, read_series
from hl7_fhir.fhir.bundle import build_report_bundle
from hl7_fhir.hl7v2.oru import build_oru
from hl7_fhir.types import DeviceInfo
from inference.errors import PermanentInferenceError, TransientInferenceError
from inference.registry import ModelRegistry
from inference.types import Prediction, Volume
from workers.db import utcnow
from workers.errors import PermanentError, TransientError
from workers.messages import JobContext, OutputRef, PipelineResult
from workers.pipelines import mapping

log = logging.getLogger(__name__)

PROCEDURE = dcodes.procedure_for_modality("CT")


class IchPipeline:
    """Loaded once per worker process: the model stays warm between studies."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        try:
            self.engine = create_engine(str(options["db_url"]))
            self.output_dir = Path(options["output_dir"])
            paths = tuple(Path(p) for p in options.get("model_paths", ("models",)))
        except KeyError as exc:
            raise PermanentError(f"ich pipeline option {exc} is not configured") from exc
        self.name = str(options.get("name", "ich"))
        self.critical = tuple(options.get("critical", ("any", "intraparenchymal",
                                                       "extra_axial", "intraventricular")))
        self.registry = ModelRegistry(paths, device=device,
                                      warmup=bool(options.get("warmup", True)))
        self.predict_options = dict(options.get("predict", {}))
        self.model_id = str(options.get("model", "ich-demo"))
        try:
            self.model = self.registry.get(self.model_id)
        except PermanentInferenceError as exc:
            raise PermanentError(f"ich model {self.model_id!r} cannot be loaded: {exc}") from exc
        card = self.registry.card(self.model_id)
        self.model_version = str(options.get("model_version", card.version))
        if self.model_version != card.version:
            raise PermanentError(
                f"configured model version {self.model_version!r} but the card of "
                f"{self.model_id!r} says {card.version!r}")

    def run(self, context: JobContext) -> PipelineResult:
        index = IndexStore(self.engine)
        paths = {s.series_instance_uid: index.series_paths(s.series_instance_uid)
                 for s in context.series}
        headers = read_headers([p for ps in paths.values() for p in ps])
        selection = select_ich(study_facts(headers))
        choice = selection.series_for("ct")
        summary: dict[str, str | int | float | bool] = {
            "selection": json.dumps(selection.record())}
        if choice is None:
            reasons = "; ".join(r for v in selection.verdicts for r in v.reasons) or "none"
            return self._not_analysed(context, headers, f"no usable head CT series ({reasons})",
                                      summary)
        try:
            volume = read_series(paths[choice.series_instance_uid])
        except DicomPermanentError as exc:
            return self._not_analysed(context, headers, f"series cannot be read: {exc}", summary)
        array = volume.voxels
        prediction = self._predict(Volume.from_array(
            array, volume.spacing, tuple(r.sop_instance_uid for r in volume.slice_refs)))
        sources = [volume.headers[r.header_index] for r in volume.slice_refs]
        voxel_mm3 = float(volume.spacing[0] * volume.spacing[1] * volume.spacing[2])
        findings = mapping.dicom_findings(prediction, dcodes.BRAIN, voxel_mm3)
        outputs = self._write(context, sources, findings, prediction)
        positive = list(prediction.positive)
        summary.update({"series": choice.series_instance_uid, "positive": ",".join(positive),
                        "slices": int(array.shape[0])})
        critical = any(k in self.critical for k in positive)
        return PipelineResult(outputs=outputs, summary=summary,
                              priority_flag="critical: ICH suspected" if critical else None)

    def _predict(self, volume: Volume) -> Prediction:
        try:
            return self.model.predict(volume, explain=True, **self.predict_options)
        except TransientInferenceError as exc:
            raise TransientError(f"inference: {exc}") from exc
        except PermanentInferenceError as exc:
            raise PermanentError(f"inference: {exc}") from exc

    def _algorithm(self) -> AlgorithmInfo:
        card = self.registry.card(self.model_id)
        return AlgorithmInfo(name=card.name, version=card.version,
                             manufacturer=card.manufacturer, model_name=card.id,
                             weights_sha256=card.weights_sha256)

    def _folder(self, context: JobContext) -> Path:
        folder = self.output_dir / context.study_instance_uid / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _write(self, context: JobContext, sources: list[Dataset], findings: Any,
               prediction: Prediction | None) -> tuple[OutputRef, ...]:
        algorithm = self._algorithm()
        ctx = EncodeContext.for_job(context.study_instance_uid, EncodePipeline.ICH, algorithm,
                                    utcnow)
        encoded = encode_outputs(sources, findings, ctx)
        folder = self._folder(context)
        refs = []
        for ds in encoded.datasets():
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            refs.append(OutputRef(kind="dicom", uid=str(ds.SOPInstanceUID), path=str(path)))
        study = mapping.study_facts(sources, PROCEDURE)
        device = DeviceInfo(name=algorithm.name, version=algorithm.version,
                            manufacturer=algorithm.manufacturer,
                            device_uid=ctx.uids.device_uid(algorithm.weights_sha256))
        fhir = (mapping.fhir_findings(prediction, dcodes.BRAIN, self.critical)
                if prediction is not None else [])
        conclusion = _conclusion(prediction, findings)
        bundle = build_report_bundle(study, fhir, device, conclusion, utcnow)
        bundle_path = folder / "report-bundle.json"
        bundle_path.write_text(bundle.model_dump_json(exclude_none=True))
        refs.append(OutputRef(kind="fhir-bundle", uid=ctx.uids.uid("fhir-bundle"),
                              path=str(bundle_path)))
        oru_uid = ctx.uids.uid("hl7-oru")
        oru = build_oru(study, fhir, device, utcnow, control_id=oru_uid[-20:],
                        conclusion=conclusion)
        oru_path = folder / "report.hl7"
        oru_path.write_text(oru)
        refs.append(OutputRef(kind="hl7-oru", uid=oru_uid, path=str(oru_path)))
        return tuple(refs)

    def _not_analysed(self, context: JobContext, headers: list[Dataset], reason: str,
                      summary: dict[str, str | int | float | bool]) -> PipelineResult:
        log.info("job %s not analysed: %s", context.job_id, reason)
        if not headers:
            raise PermanentError("no instances of the routed series are in the index")
        sources = [h for h in headers if h.get("Modality") == "CT"] or headers
        outputs = self._write(context, sources, NotAnalysed(reason), None)
        summary["not_analysed"] = reason
        return PipelineResult(outputs=outputs, summary=summary)


def _conclusion(prediction: Prediction | None, findings: Any) -> str:
    if isinstance(findings, NotAnalysed) or prediction is None:
        reason = findings.reason if isinstance(findings, NotAnalysed) else "unknown"
        return f"Not analysed: {reason}. AI-generated, not verified."
    positive = [prediction.result(key).name for key in prediction.positive]
    if not positive:
        return "No intracranial haemorrhage detected by the AI model. AI-generated, not verified."
    return ("AI suspects intracranial haemorrhage: " + ", ".join(positive)
            + ". AI-generated, not verified; for prioritisation only.")
