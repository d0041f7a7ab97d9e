"""Study assembly: decides when series and studies have finished arriving.

A series is complete once its persisted timer (`complete_after`, reset by each instance) has
passed, or earlier when the data said how many instances to expect and they are all here. A study
is ready when none of its series is still receiving. The state lives in the index, so a restart
resumes every timer, and a study marked ready but not yet handed over is handed over again
(the consumer is idempotent). An instance that arrives after completion reopens its series and
study, and the next completion is an amendment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, or_, select, update

from dicom_node.events import SeriesSummary, StudyReady
from dicom_node.index.tables import instances, series, studies
from dicom_node.metrics import IngestMetrics

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything the node writes is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class StudyAssembler:
    """Polls the index and hands each ready study to `on_ready`."""

    def __init__(
        self,
        engine: Engine,
        on_ready: Callable[[StudyReady], None],
        *,
        clock: Clock = utc_now,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.on_ready = on_ready
        self.clock = clock
        self.metrics = metrics

    def tick(self) -> list[StudyReady]:
        """One pass: completes due series, marks ready studies, hands them over."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                update(series)
                .where(
                    and_(
                        series.c.state == "receiving",
                        or_(
                            series.c.complete_after <= now,
                            and_(
                                series.c.expected_count.is_not(None),
                                series.c.instance_count >= series.c.expected_count,
                            ),
                        ),
                    )
                )
                .values(state="complete", completed_at=now)
            )
            still_receiving = select(series.c.study_instance_uid).where(
                series.c.state == "receiving"
            )
            conn.execute(
                update(studies)
                .where(
                    and_(
                        studies.c.state == "receiving",
                        studies.c.study_instance_uid.not_in(still_receiving),
                    )
                )
                .values(state="ready", completions=studies.c.completions + 1, completed_at=now)
            )
            ready = conn.execute(
                select(studies.c.study_instance_uid, studies.c.completions).where(
                    studies.c.state == "ready"
                )
            ).all()
        handed: list[StudyReady] = []
        for row in ready:
            event = self._event(row.study_instance_uid, row.completions, now)
            try:
                self.on_ready(event)
            except Exception:  # noqa: BLE001 - the consumer's failure must not stop assembly
                log.exception("study-ready consumer failed; retrying on the next pass")
                continue
            with self.engine.begin() as conn:
                conn.execute(
                    update(studies)
                    .where(
                        and_(
                            studies.c.study_instance_uid == row.study_instance_uid,
                            studies.c.state == "ready",
                        )
                    )
                    .values(state="emitted")
                )
            if self.metrics is not None:
                kind = "first" if event.amendment == 0 else "amendment"
                self.metrics.completions.labels(kind=kind).inc()
            handed.append(event)
        return handed

    def _event(self, study_uid: str, completions: int, now: datetime) -> StudyReady:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(series)
                .where(series.c.study_instance_uid == study_uid)
                .order_by(series.c.series_number, series.c.series_instance_uid)
            ).all()
            summaries = []
            for row in rows:
                classes = conn.execute(
                    select(instances.c.sop_class_uid).distinct().where(
                        instances.c.series_instance_uid == row.series_instance_uid
                    )
                ).scalars()
                summaries.append(
                    SeriesSummary(
                        series_instance_uid=row.series_instance_uid,
                        modality=row.modality,
                        body_part_examined=row.body_part_examined,
                        series_description=row.series_description,
                        protocol_name=row.protocol_name,
                        image_type=tuple(row.image_type.split("\\")) if row.image_type else (),
                        sop_class_uids=tuple(sorted(classes)),
                        instance_count=row.instance_count,
                        slice_thickness=row.slice_thickness,
                        calling_ae=row.calling_ae,
                        called_ae=row.called_ae,
                    )
                )
        return StudyReady(
            study_instance_uid=study_uid,
            series=tuple(summaries),
            completed_at=now,
            amendment=max(completions - 1, 0),
        )

    def run(self, stop: threading.Event, poll_s: float) -> None:
        """Ticks every `poll_s` seconds until `stop` is set; a failing pass is logged, not fatal."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a DB blip must not end assembly for good
                log.exception("assembly pass failed")
            stop.wait(poll_s)
