"""Synthetic traffic for the monitoring tests: finished ich jobs recorded through the real job
path (routing, claim, complete) under a controlled clock, each carrying the monitoring facts
the runner computes (`workers.monitoring.features`) on a synthetic header and volume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset
from sqlalchemy import Engine

from workers import samples
from workers.config import WorkersConfig
from workers.jobs import claim, complete
from workers.messages import PipelineResult, ReportOutcome
from workers.monitoring import features
from workers.submit import on_study_ready


@dataclass(frozen=True)
class Scanner:
    manufacturer: str
    model: str
    kernel: str
    thickness_mm: tuple[float, ...]
    spacing_mm: tuple[float, float]
    hu_offset: float


BEFORE = (Scanner("Siemens", "SOMATOM Force", "Hr38", (5.0, 4.8), (0.42, 0.49), 0.0),
          Scanner("GE", "Revolution", "STANDARD", (5.0, 2.5), (0.45, 0.50), 0.0))
AFTER = Scanner("Canon", "Aquilion ONE", "FC26", (0.5,), (0.39, 0.43), 30.0)


def header(scanner: Scanner, rng: np.random.Generator, accession: str) -> Dataset:
    ds = Dataset()
    ds.Manufacturer = scanner.manufacturer
    ds.ManufacturerModelName = scanner.model
    ds.ConvolutionKernel = scanner.kernel
    ds.SliceThickness = float(rng.choice(scanner.thickness_mm))
    ds.PixelSpacing = [round(float(rng.uniform(*scanner.spacing_mm)), 4)] * 2
    ds.AccessionNumber = accession
    return ds


def volume(scanner: Scanner, rng: np.random.Generator) -> np.ndarray:
    """A small head-CT-like volume: air, brain and a skull band, with the scanner's offset."""
    vox = rng.normal(35.0, 6.0, (6, 24, 24)).astype(np.float32)
    vox[:, :3, :] = -1000.0
    vox[:, 3:5, :] = rng.normal(900.0, 80.0, (6, 2, 24))
    return vox + np.float32(scanner.hu_offset)


def pick(rng: np.random.Generator, drifted: bool) -> Scanner:
    if drifted and rng.random() < 0.6:
        return AFTER
    return BEFORE[0] if rng.random() < 0.7 else BEFORE[1]


def validation_records(n: int, seed: int) -> list[dict[str, object]]:
    """Feature records of the validation inputs (the pre-drift population)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scanner = pick(rng, False)
        out.append(features.input_features(header(scanner, rng, "V"), volume(scanner, rng),
                                           score=float(rng.random())))
    return out


def finish_job(engine: Engine, cfg: WorkersConfig, at: datetime, *, pipeline: str = "ich",
               summary: dict[str, str | int | float | bool],
               outcome: ReportOutcome = ReportOutcome.RESULT,
               reason: str | None = None) -> str:
    """One head CT routed, claimed and completed at `at`; returns the job id."""
    study = samples.study(samples.series(), completed_at=at)
    jobs = [j for j in on_study_ready(engine, cfg, study, clock=lambda: at)
            if j.pipeline == pipeline]
    assert len(jobs) == 1, [j.pipeline for j in jobs]
    context = claim(engine, cfg, jobs[0].id, "monitor-test", "cpu", at).context
    assert context is not None
    result = PipelineResult(summary=summary, outcome=outcome, reason=reason)
    assert complete(engine, jobs[0].id, context.attempt, result, at, lambda: at)
    return jobs[0].id


def analysed_summary(scanner: Scanner, rng: np.random.Generator, accession: str,
                     positive: bool, score: float) -> dict[str, str | int | float | bool]:
    facts = features.input_features(header(scanner, rng, accession), volume(scanner, rng),
                                    score=score)
    return {"positive": "any" if positive else "", features.MONITORING_KEY: features.encode(facts)}
