"""How a queued job reaches a worker. The database row is the job; a transport only delivers
its id. Losing a message is harmless: the reconciler re-sends queued jobs, and a duplicate is
dropped at claim time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from kombu.exceptions import OperationalError

from workers.errors import BrokerUnavailable
from workers.messages import Job

if TYPE_CHECKING:
    from celery import Celery

TASK_NAME = "infernode.run_job"


class Transport(Protocol):
    #: False for the embedded transport, whose worker polls the jobs table itself
    sends_messages: bool

    def send(self, job: Job) -> None:
        """Deliver `job.id` to a worker. Raises BrokerUnavailable."""


class EmbeddedTransport:
    """No messages: the embedded runner claims queued rows directly from the database."""

    sends_messages = False

    def send(self, job: Job) -> None:
        return None


class CeleryTransport:
    """Publishes `run_job(job_id)` to the job's queue, without Celery's publish retries: a
    broker that is down must not block the caller (the SCP's completion path); the job waits
    in the database and the reconciler sends it later."""

    sends_messages = True

    def __init__(self, app: Celery) -> None:
        self._app = app

    def send(self, job: Job) -> None:
        try:
            self._app.send_task(TASK_NAME, args=[job.id], queue=job.queue, retry=False)
        except (OperationalError, OSError) as exc:
            raise BrokerUnavailable(f"broker refused job {job.id}: {type(exc).__name__}") from exc
