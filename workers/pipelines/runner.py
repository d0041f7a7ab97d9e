"""The one generic runner: executes any `PipelineDefinition`.

select (the definition's selector over the study's series facts) -> read (one volume per role,
all on the primary role's grid) -> predict (the model the rule or the definition names, through
the model registry's task table) -> map (findings coded from the model card) -> encode (SEG,
SR, KOS, FHIR, ORU through `Reporter`) -> record (the caller records the result).

A study it cannot analyse (no usable series, a series that cannot be read) gets the
not-analysed report; a deterministic failure anywhere is answered the same way by
`workers.execution`, through `not_analysed`. When the model card has a `quality` gate the
primary volume is checked before the model runs, and with an `uncertainty` section the model
also runs on the mirrored study: a failed gate or too large a spread gets the "indeterminate -
read as usual: reason" report (`inference.quality`, `inference.uncertainty`).

Options (from the pipeline's spec; the node fills in `db_url`, `output_dir`, `model_paths`,
`reporting`): `model` (registry id, default the definition's), `model_version` (must equal the
card's), `critical` (class keys that raise the priority signal), `critical_probability` (class
key -> the probability at or above which it does; default: any positive result),
`critical_volume_ml` (mask key -> mL), `warmup` (one forward pass at load, default true),
`predict` (extra keyword arguments for the model, e.g. `{n_models: 4}` for BLAST-CT), and the
definition's own wording options (e.g. stroke's `large_core_ml`).

Radiograph definitions (`input: radiographs`) read each chosen image on its own pixel grid
(`dicom_node.radiograph.read_radiograph`) instead of one volume per role; images the model does
not read (a body part its card does not list, a photometric it cannot use, pixels that cannot
be decoded) are left out with their reason, and a study with none left gets the not-analysed
report naming them. The card's `quality` gate then runs image by image
(`inference.quality.assess_radiograph`): an image that fails it is left out with its reason, a
study whose every image fails is indeterminate; with `uncertainty` the model also reads the
mirrored images, and too large a spread is indeterminate too.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.encode import codes as dcodes
from dicom_node.encode.types import AlgorithmInfo, Finding
from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.radiograph import (
    RadiographImage,
    RadiographReadError,
    find_body_part,
    read_radiograph,
)
from dicom_node.selection import Selection, study_facts
from dicom_node.volume import SeriesVolume, read_headers, read_series
from dicom_node.volume.registration import align_onto
from dicom_node.volume.sources import on_source_frames
from inference import quality, uncertainty
from inference.cards import QualitySpec
from inference.errors import PermanentInferenceError
from inference.registry import ModelRegistry
from inference.types import Prediction, Radiograph, StudyInput, Volume
from workers.errors import PermanentError
from workers.messages import JobContext, PipelineResult
from workers.monitoring import features as monitoring
from workers.pipelines import mapping
from workers.pipelines.definition import PipelineDefinition
from workers.pipelines.report import NodeFacts, Reporter, ReportSpec, Summary
from workers.pipelines.views import write_views

log = logging.getLogger(__name__)


class StudyPipeline:
    """A definition bound to a loaded model; built once per worker process (the model stays
    warm between studies)."""

    def __init__(self, definition: PipelineDefinition, device: str,
                 options: Mapping[str, Any]) -> None:
        self.definition = definition
        facts = NodeFacts.from_options(dict(options), definition.name)
        self.name = str(options.get("name", definition.name))
        self.critical = tuple(options.get("critical", definition.priority.classes))
        self.critical_volume_ml = {str(k): float(v) for k, v in dict(options.get(
            "critical_volume_ml", definition.priority.mask_volume_ml)).items()}
        self.critical_probability = {str(k): float(v) for k, v in dict(options.get(
            "critical_probability", definition.priority.probability)).items()}
        self.wording = dict(options)
        paths = tuple(Path(p) for p in options.get("model_paths", ("models",)))
        self.registry = ModelRegistry(paths, device=device,
                                      warmup=bool(options.get("warmup", True)))
        self.predict_options = dict(options.get("predict", {}))
        self.views = bool(options.get("views", True))  # overlay series and GSPS
        self.model_id = str(options.get("model", definition.default_model))
        try:
            self.model = self.registry.get(self.model_id)
        except PermanentInferenceError as exc:
            raise PermanentError(f"{definition.name} model {self.model_id!r} cannot be loaded: "
                                 f"{exc}", reason="model_unavailable") from exc
        card = self.registry.card(self.model_id)
        self.model_version = str(options.get("model_version", card.version))
        if self.model_version != card.version:
            raise PermanentError(
                f"configured model version {self.model_version!r} but the card of "
                f"{self.model_id!r} says {card.version!r}", reason="model_version_mismatch")
        spec = ReportSpec(name=self.name, kind=definition.report, modality=definition.modality,
                          target_label=definition.target_label)
        self.reporter = Reporter(facts, spec, self._algorithm)

    def run(self, context: JobContext) -> PipelineResult:
        d = self.definition
        paths = self.reporter.series_paths(context)
        files = [p for ps in paths.values() for p in ps]
        headers = read_headers(files)
        facts = study_facts(headers)
        selection = d.select(facts)
        summary: Summary = {"selection": json.dumps(selection.record())}
        # monitoring facts (scanner, hashed accession); the input's own once it is read
        summary[monitoring.MONITORING_KEY] = monitoring.encode(
            monitoring.header_features(headers[0] if headers else None))
        if not selection.ok:
            reasons = "; ".join(r for v in selection.verdicts for r in v.reasons) or "none"
            return self.reporter.not_analysed(
                context, f"no usable {d.target_label} input ({reasons})", "no_usable_series",
                headers, summary)
        if d.input == "radiographs":
            return self._run_radiographs(context, selection, files, headers, summary)
        registrations: dict[str, Summary] = {}
        try:
            volumes = read_roles(d, selection, files, headers, registrations)
        except DicomPermanentError as exc:
            code = getattr(exc, "reason", "unreadable_series")
            return self.reporter.not_analysed(
                context, f"series cannot be read: {exc}",
                code if isinstance(code, str) else "unreadable_series", headers, summary)
        primary = volumes[d.primary_role]
        for role, report in registrations.items():
            summary.update({f"{role}_{key}": value for key, value in report.items()})
        study = StudyInput(volumes={role: model_volume(v) for role, v in volumes.items()})
        options = {**d.model_options(facts, selection), **self.predict_options}
        card = self.registry.card(self.model_id)
        if card.quality is not None:  # the card's input quality gate, before the model
            gate = quality.assess(study.volumes[d.primary_role], card.quality)
            summary["quality"] = json.dumps(gate.measures)
            if not gate.passed:
                return self.reporter.indeterminate(
                    context, f"input quality: {'; '.join(gate.reasons)}", "quality_gate",
                    list(primary.headers), summary)
        prediction = self._predict(study, options)
        if card.uncertainty is not None:  # test-time augmentation: the mirrored study
            stability = uncertainty.spread(prediction, self.model.predict_input(
                uncertainty.mirrored(study), explain=False, **options), card.uncertainty)
            summary["uncertainty"] = json.dumps(stability.measures)
            if not stability.passed:
                return self.reporter.indeterminate(
                    context, f"uncertain result: {'; '.join(stability.reasons)}", "uncertain",
                    list(primary.headers), summary)
        sources = [primary.headers[r.header_index] for r in primary.slice_refs]
        if any(r.tile is not None or r.frame_number is not None for r in primary.slice_refs):
            # mosaic slices or frames of a multi-frame image (read in part, e.g. its b=1000
            # frames): the SEG's frames are the stored ones, masks laid back where each slice
            # came from (unread frames empty)
            sources, prediction = _on_stored_frames(primary, prediction)
        voxel_mm3 = float(primary.spacing[0] * primary.spacing[1] * primary.spacing[2])
        findings = mapping.dicom_findings(
            prediction, d.finding_site, voxel_mm3, d.seg_property_type,
            frame_numbers=tuple(r.frame_number for r in primary.slice_refs))
        fhir = mapping.fhir_findings(prediction, d.finding_site, self.critical)
        outputs = self.reporter.write(context, sources, findings, fhir,
                                      d.conclusion(prediction, self.wording))
        outputs += self._views(context, sources, findings, files, headers, prediction,
                               summary)
        positive = list(prediction.positive)
        summary.update({"series": primary.series_instance_uid, "positive": ",".join(positive),
                        "slices": int(primary.voxels.shape[0])})
        summary[monitoring.MONITORING_KEY] = monitoring.encode(monitoring.input_features(
            primary.headers[0], primary.voxels,
            score=max(prediction.study_probabilities.values(), default=None)))
        for mask in prediction.masks:
            summary[f"{mask.key}_ml"] = round(float(mask.volume_ml), 3)
        return self._result(prediction, outputs, summary)

    def _result(self, prediction: Prediction, outputs: tuple[Any, ...],
                summary: Summary) -> PipelineResult:
        raised = self.definition.priority.raised(
            prediction, self.critical, self.critical_volume_ml, self.critical_probability)
        return PipelineResult(outputs=outputs, summary=summary,
                              priority_flag=self.definition.priority.signal if raised else None)

    def _run_radiographs(self, context: JobContext, selection: Selection,
                         files: Sequence[str], headers: Sequence[Dataset],
                         summary: Summary) -> PipelineResult:
        """Each chosen image through the detection model; boxes on their own images."""
        d = self.definition
        images, skipped = self._read_radiographs(selection, files, headers)
        summary["images_skipped"] = len(skipped)
        if not images:
            counts = Counter(reason for reason, _ in skipped)
            detail = "; ".join(sorted({text for _, text in skipped}))
            return self.reporter.not_analysed(
                context, f"no {d.target_label} the model reads ({detail})",
                counts.most_common(1)[0][0] if counts else "no_usable_series", headers, summary)
        predict_images = getattr(self.model, "predict_images", None)
        if predict_images is None:
            raise PermanentError(f"model {self.model_id!r} does not read radiographs",
                                 reason="model_task_mismatch")
        by_uid = {str(h.get("SOPInstanceUID", "")): h for h in headers}
        card = self.registry.card(self.model_id)
        if card.quality is not None:  # the card's gate, image by image, before the model
            gated = images
            images, refused = _gate_radiographs(gated, by_uid, card.quality, summary)
            if not images:
                return self.reporter.indeterminate(
                    context, f"input quality: {'; '.join(refused)}",
                    "quality_gate", [by_uid[i.sop_instance_uid] for i in gated], summary)
        inputs = [Radiograph(array=i.pixels, image_id=i.sop_instance_uid,
                             pixel_spacing_mm=i.pixel_spacing_mm, body_part=i.body_part,
                             laterality=i.laterality, view=i.view) for i in images]
        prediction: Prediction = predict_images(inputs, explain=False, **self.predict_options)
        if card.uncertainty is not None:  # test-time augmentation: the mirrored images
            stability = uncertainty.spread(prediction, predict_images(
                uncertainty.mirrored_images(inputs), explain=False, **self.predict_options),
                card.uncertainty)
            summary["uncertainty"] = json.dumps(stability.measures)
            if not stability.passed:
                return self.reporter.indeterminate(
                    context, f"uncertain result: {'; '.join(stability.reasons)}", "uncertain",
                    [by_uid[i.sop_instance_uid] for i in images], summary)
        facts = {i.sop_instance_uid: mapping.ImageFacts(
            rows=i.rows, columns=i.columns,
            site=dcodes.body_part_site(i.body_part) or d.finding_site,
            laterality=dcodes.LATERALITY.get(i.laterality) if i.laterality else None)
            for i in images}
        sources = [by_uid[i.sop_instance_uid] for i in images]
        findings = mapping.radiograph_findings(prediction, facts, d.finding_site)
        fhir = mapping.fhir_detection_findings(prediction, facts, d.finding_site, self.critical)
        outputs = self.reporter.write(context, sources, findings, fhir,
                                      d.conclusion(prediction, self.wording))
        outputs += self._views(context, sources, findings, files, headers, prediction,
                               summary)
        summary.update({"images": len(images), "detections": len(prediction.detections),
                        "positive": ",".join(prediction.positive)})
        summary[monitoring.MONITORING_KEY] = monitoring.encode(monitoring.input_features(
            sources[0], [i.pixels for i in images],
            score=max(prediction.study_probabilities.values(), default=None)))
        return self._result(prediction, outputs, summary)

    def _read_radiographs(self, selection: Selection, files: Sequence[str],
                          headers: Sequence[Dataset]
                          ) -> tuple[list[RadiographImage], list[tuple[str, str]]]:
        """The chosen images the model reads (their card's body parts; None listed: any), and
        (reason code, reason) for every other."""
        chosen_series = {c.series_instance_uid for c in selection.choices}
        chosen_uids = {u for c in selection.choices for u in c.sop_instance_uids}
        listed = self.registry.card(self.model_id).body_parts
        parts = frozenset(p.upper() for p in listed) if listed else None
        images: list[RadiographImage] = []
        skipped: list[tuple[str, str]] = []
        for path, header in zip(files, headers, strict=True):
            uid = str(header.get("SOPInstanceUID", ""))
            if str(header.get("SeriesInstanceUID", "")) not in chosen_series or (
                    chosen_uids and uid not in chosen_uids):
                continue
            # the body part is a header fact: an image of a part the card does not list is
            # left out before its pixels are decoded
            part = find_body_part(header)[0]
            if parts is not None and part not in parts:
                skipped.append(("body_part_not_supported",
                                f"body part {part or 'not stated'} is not one the "
                                f"model reads ({', '.join(sorted(parts))})"))
                continue
            try:
                images.append(read_radiograph(path))
            except RadiographReadError as exc:
                skipped.append((exc.reason, str(exc)))
        return images, skipped

    def not_analysed(self, context: JobContext, reason: str, code: str) -> PipelineResult:
        """The not-analysed report after a deterministic failure of `run`."""
        return self.reporter.not_analysed(context, reason, code)

    def _predict(self, study: StudyInput, options: Mapping[str, Any]) -> Prediction:
        # inference's errors subclass the common failure bases: the job layer classifies them
        # (transient: retried; permanent: a not-analysed report with the card's reason code)
        return self.model.predict_input(study, explain=True, **options)

    def _views(self, context: JobContext, sources: Sequence[Dataset],
               findings: Sequence[Finding], files: Sequence[str],
               headers: Sequence[Dataset], prediction: Prediction,
               summary: Summary) -> tuple[Any, ...]:
        """The overlay series and GSPS of a positive result (option `views`, default on); why
        they are missing, when they could not be drawn, goes into the summary."""
        if not self.views:
            return ()
        paths = {str(h.get("SOPInstanceUID", "")): f for f, h in zip(files, headers, strict=True)}
        refs, note = write_views(self.reporter, self._algorithm(), context, sources, findings,
                                 paths, prediction)
        if note is not None:
            summary["views"] = note
        return refs

    def _algorithm(self) -> AlgorithmInfo:
        card = self.registry.card(self.model_id)
        return AlgorithmInfo(name=card.name, version=card.version,
                             manufacturer=card.manufacturer, model_name=card.id,
                             weights_sha256=card.weights_sha256)


def _gate_radiographs(images: Sequence[RadiographImage], by_uid: Mapping[str, Dataset],
                      spec: QualitySpec, summary: Summary
                      ) -> tuple[list[RadiographImage], list[str]]:
    """The images that pass the card's quality gate, and the reasons of those that do not
    (each prefixed with its image's position in the study). The measures of every image
    (by position) go into the summary's ``quality``; the refused ones' reasons into
    ``images_refused``."""
    kept: list[RadiographImage] = []
    refused: list[str] = []
    measures: dict[str, dict[str, float]] = {}
    for n, image in enumerate(images, start=1):
        gate = quality.assess_radiograph(
            image.pixels, _bits_stored(by_uid[image.sop_instance_uid]), spec)
        measures[f"image {n}"] = gate.measures
        if gate.passed:
            kept.append(image)
        else:
            refused.append(f"image {n}: {', '.join(gate.reasons)}")
    summary["quality"] = json.dumps(measures)
    if refused:
        summary["images_refused"] = "; ".join(refused)
        summary["images_skipped"] = int(summary.get("images_skipped", 0)) + len(refused)
    return kept, refused


def _bits_stored(header: Dataset) -> int | None:
    """Bits Stored when the header gives a usable one (1 to 32), else None."""
    try:
        bits = int(header.get("BitsStored"))
    except (TypeError, ValueError):
        return None
    return bits if 1 <= bits <= 32 else None


def _on_stored_frames(volume: SeriesVolume, prediction: Prediction
                      ) -> tuple[list[Dataset], Prediction]:
    """The stored images as sources, and each mask laid on their frames (mosaic tiles, or the
    frames of a multi-frame image)."""
    stored, _ = on_source_frames(volume, np.zeros(volume.shape, np.uint8))
    masks = tuple(replace(m, mask=on_source_frames(volume, m.mask)[1])
                  for m in prediction.masks)
    return list(stored), replace(prediction, masks=masks)


def read_roles(definition: PipelineDefinition, selection: Selection, files: Sequence[str],
               headers: Sequence[Dataset], registrations: dict[str, Summary] | None = None,
               ) -> dict[str, SeriesVolume]:
    """One volume per role of the definition (the chosen instances, or frames of a
    multi-frame image); every role after the first is brought onto the primary role's grid:
    resampled by patient coordinates in one Frame of Reference, registered rigidly across
    two (each registration's report goes into `registrations` by role).

    Raises:
        dicom_node.errors.PermanentError: a chosen series cannot be read or aligned.
    """
    by_uid = {str(h.get("SOPInstanceUID", "")): f for f, h in zip(files, headers, strict=True)}
    by_series: dict[str, list[str]] = {}
    for f, h in zip(files, headers, strict=True):
        by_series.setdefault(str(h.get("SeriesInstanceUID", "")), []).append(f)
    volumes: dict[str, SeriesVolume] = {}
    for role in definition.roles:
        choice = selection.series_for(role)
        if choice is None:
            continue
        chosen = ([by_uid[u] for u in choice.sop_instance_uids if u in by_uid]
                  if choice.sop_instance_uids else by_series[choice.series_instance_uid])
        volume = read_series(chosen, frames=choice.frames or None)
        if volumes:
            volume, report = align_onto(volume, volumes[definition.primary_role])
            if report is not None and registrations is not None:
                registrations[role] = report.summary()
        volumes[role] = volume
    return volumes


def model_volume(volume: SeriesVolume) -> Volume:
    """The model's view of a series: voxels, spacing, the LPS affine and the slice ids."""
    return Volume(array=volume.voxels, spacing=volume.spacing, affine=volume.affine,
                  slice_ids=tuple(r.sop_instance_uid for r in volume.slice_refs))
