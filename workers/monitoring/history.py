"""Evaluation cases from the node's own history (`infernode models evaluate --layout
history`): each analysed study of a pipeline that has a truth (its final report's label, else
a reader's verdict) becomes a labelled study, its volume read again from the spool through the
instance index, the way the runner read it (the series the job used)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select

from dicom_node.errors import PermanentError as DicomPermanentError
from dicom_node.index.store import IndexStore
from dicom_node.volume import read_series
from inference.evaluation.datasets import LabelledStudy
from workers.db import jobs
from workers.monitoring.agreement import labelled_jobs
from workers.pipelines.runner import model_volume


@dataclass
class HistoryCases:
    """The labelled studies (built lazily) and what was left out, with why."""

    found: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def history_studies(engine: Engine, pipeline: str, label_key: str, start: datetime,
                    end: datetime, tally: HistoryCases) -> Iterator[LabelledStudy]:
    """One `LabelledStudy` per labelled analysed job (label under `label_key`); jobs whose
    series are gone from the spool (retention) or no longer read are counted in `tally`."""
    index = IndexStore(engine)
    for fact, truth in labelled_jobs(engine, pipeline, start, end):
        with engine.connect() as conn:
            result = conn.execute(select(jobs.c.result).where(jobs.c.id == fact.job_id)
                                  ).scalar_one()
        series = str(((result or {}).get("summary") or {}).get("series") or "")
        paths = index.series_paths(series) if series else []
        if not paths:
            tally.skipped.append((fact.job_id, "series not in the spool"))
            continue
        try:
            volume = read_series(paths)
        except (DicomPermanentError, OSError) as exc:
            tally.skipped.append((fact.job_id, type(exc).__name__))
            continue
        tally.found += 1
        yield LabelledStudy(study_id=fact.job_id, volume=model_volume(volume),
                            labels={label_key: int(truth)})
