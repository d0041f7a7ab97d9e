"""The delivery runner: a thread in the node process that plans delivery rows for new outputs,
claims what is due, sends it through the adapters and records each outcome.

One pass (`run_due_once`): plan, claim up to `claim_limit` due rows, group them (the DICOM
outputs of one job to one PACS go in one association or one STOW-RS request; everything else
one by one), send each destination's batches in turn, destinations side by side (up to
`parallel_destinations` threads) so a PACS that times out does not hold up the EHR. The loop
runs passes back to back while work is claimed, then sleeps `poll_interval_s` or until
`wake()`.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError

from workers.db import utcnow
from workers.outbox.adapters import Adapter, AnyDestination, Sent, build_adapter
from workers.outbox.claims import (
    Claim,
    DueDelivery,
    Failure,
    claim_due,
    mark_delivered,
    mark_failed,
    release,
)
from workers.outbox.config import DeliveryConfig
from workers.outbox.metrics import DeliveryMetrics
from workers.outbox.record import plan_deliveries
from workers.outbox.tables import DEAD, DELIVERED, PENDING, deliveries

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class _HasDelivery(Protocol):
    @property
    def delivery(self) -> DeliveryConfig: ...


@dataclass(frozen=True)
class PassReport:
    """What one pass did."""

    planned: int = 0
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0

    def __add__(self, other: PassReport) -> PassReport:
        return PassReport(*(a + b for a, b in zip(self._tuple(), other._tuple(), strict=True)))

    def _tuple(self) -> tuple[int, int, int, int, int]:
        return (self.planned, self.claimed, self.delivered, self.retried, self.dead)


def _batches(items: Sequence[DueDelivery],
             dests: dict[str, AnyDestination]) -> dict[str, list[list[DueDelivery]]]:
    """Per destination, its batches in claim order: a job's outputs together where the
    destination batches, else one delivery per batch."""
    out: dict[str, list[list[DueDelivery]]] = defaultdict(list)
    grouped: dict[tuple[str, str], list[DueDelivery]] = {}
    for item in items:
        if not dests[item.destination].batches:
            out[item.destination].append([item])
            continue
        key = (item.destination, item.output.job_id)
        if key not in grouped:
            grouped[key] = []
            out[item.destination].append(grouped[key])
        grouped[key].append(item)
    return out


class DeliveryRunner:
    """Sends due deliveries until stopped. `cfg` is the DeliveryConfig, or any settings
    object with a `delivery` section (WorkersConfig). Build it in the node process only."""

    def __init__(self, engine: Engine, cfg: DeliveryConfig | _HasDelivery, *,
                 clock: Clock = utcnow, metrics: DeliveryMetrics | None = None,
                 rng: random.Random | None = None) -> None:
        self._engine = engine
        self._cfg = cfg if isinstance(cfg, DeliveryConfig) else cfg.delivery
        self._clock = clock
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._dests: dict[str, AnyDestination] = {d.name: d for d in self._cfg.destinations}
        self._adapters: dict[str, Adapter] = {}
        self._adapters_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # the batch each sending thread is sending (thread id -> claim token and row ids: a
        # thread sends one batch at a time), and when sending stopped
        self._in_flight: dict[int, tuple[str, list[int]]] = {}
        self._in_flight_lock = threading.Lock()
        self._stopped_at: float | None = None

    @property
    def config(self) -> DeliveryConfig:
        return self._cfg

    def start(self) -> None:
        """Start the runner thread (a daemon). Does nothing when delivery is disabled."""
        if not self._cfg.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run a pass now (a job just completed) instead of at the next poll."""
        self._wake.set()

    def stop_sending(self) -> None:
        """Start no new batch; batches in flight go on. `stop` counts its grace from here, so
        the node calls this first and the grace runs alongside its other parts' stopping."""
        with self._in_flight_lock:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
        self._stop.set()
        self._wake.set()

    def stop(self, grace: float | None = None) -> None:
        """Stop sending; rows claimed but not attempted are given back. A batch still being
        sent `grace` seconds (default `stop_grace_s`) after `stop_sending` is given back too
        (due again at once, the attempt not counted) and its daemon thread abandoned: a late
        outcome of it finds the rows no longer claimed and changes nothing, and the
        destination may receive those outputs twice (delivery is at least once)."""
        self.stop_sending()
        grace = self._cfg.stop_grace_s if grace is None else grace
        deadline = (self._stopped_at or time.monotonic()) + grace
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
        with self._in_flight_lock:
            left = list(self._in_flight.values())
        for token, ids in left:
            try:
                release(self._engine, token, ids, self._clock())
            except SQLAlchemyError as exc:
                log.warning("deliveries %s could not be handed back (%s); their lease "
                            "expires instead", ids, type(exc).__name__)
                continue
            log.warning("deliveries %s handed back: the node is stopping while they were "
                        "being sent", ids)
        with self._adapters_lock:
            for adapter in self._adapters.values():
                adapter.close()
            self._adapters.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.run_due_once()
            except SQLAlchemyError as exc:
                # the database is away; the rows are safe and the next pass tries again
                log.warning("delivery pass failed: %s", type(exc).__name__)
                report = PassReport()
            if report.claimed and not self._stop.is_set():
                continue
            self._wake.wait(self._cfg.poll_interval_s)
            self._wake.clear()

    def run_due_once(self) -> PassReport:
        """One pass: plan new outputs, claim due deliveries, send them, record outcomes."""
        if not self._cfg.enabled:
            return PassReport()
        now = self._clock()
        with self._engine.begin() as conn:
            planned = plan_deliveries(conn, self._cfg, now)
            conn.execute(update(deliveries).where(
                deliveries.c.state == PENDING, deliveries.c.destination.not_in(list(self._dests)),
            ).values(state=DEAD, last_reason="unconfigured", updated_at=now,
                     last_error="destination is no longer configured"))
        enabled = [d.name for d in self._cfg.destinations if d.enabled]
        claim = claim_due(self._engine, enabled, now, self._cfg.lease_s, self._cfg.claim_limit)
        if claim is None:
            return PassReport(planned=planned)
        per_destination = _batches(claim.items, self._dests)
        report = PassReport(planned=planned, claimed=len(claim.items))
        workers = min(self._cfg.parallel_destinations, len(per_destination))
        if workers <= 1:
            results = [self._send_all(claim, name, b) for name, b in per_destination.items()]
        else:
            results = _in_daemon_threads(
                [functools.partial(self._send_all, claim, name, b)
                 for name, b in per_destination.items()], workers)
        for result in results:
            report = report + result
        return report

    def _send_all(self, claim: Claim, name: str, batches: list[list[DueDelivery]]) -> PassReport:
        report = PassReport()
        for index, batch in enumerate(batches):
            if self._stop.is_set():
                rest = [item.id for b in batches[index:] for item in b]
                release(self._engine, claim.token, rest, self._clock())
                break
            report = report + self._send_batch(claim.token, name, batch)
        return report

    def _adapter(self, name: str) -> Adapter:
        with self._adapters_lock:
            adapter = self._adapters.get(name)
            if adapter is None:
                adapter = build_adapter(self._dests[name], self._engine, self._clock)
                self._adapters[name] = adapter
            return adapter

    def _send_batch(self, token: str, name: str, batch: list[DueDelivery]) -> PassReport:
        started = time.monotonic()
        me = threading.get_ident()
        with self._in_flight_lock:
            self._in_flight[me] = (token, [item.id for item in batch])
        try:
            return self._sent(token, name, batch, started)
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(me, None)

    def _sent(self, token: str, name: str, batch: list[DueDelivery],
              started: float) -> PassReport:
        try:
            sent = self._adapter(name).send(batch)
        except Exception as exc:  # noqa: BLE001 - the one boundary where an adapter bug
            # becomes a recorded, retried attempt instead of a dead runner thread; the type
            # only, since a message might quote payload content
            log.exception("delivery adapter %s raised", name)
            sent = [Sent(i.id, Failure(False, "unexpected", type(exc).__name__)) for i in batch]
        duration = time.monotonic() - started
        if self._metrics is not None:
            self._metrics.send_seconds.labels(name).observe(duration)
        outcome = {s.delivery_id: s.failure for s in sent}
        report = PassReport()
        for item in batch:
            failure = outcome.get(item.id, Failure(False, "unexpected",
                                                   "the adapter reported no outcome"))
            report = report + self._record(token, name, item, failure, duration)
        return report

    def _record(self, token: str, name: str, item: DueDelivery, failure: Failure | None,
                duration: float) -> PassReport:
        now = self._clock()
        if failure is None:
            if not mark_delivered(self._engine, token, item.id, now, duration):
                return PassReport()
            log.info("delivery %d (%s %s) delivered to %s on attempt %d", item.id,
                     item.output.kind, item.output.uid, name, item.attempt)
            if self._metrics is not None:
                self._metrics.outcome(name, DELIVERED)
                latency = (now - item.output.recorded_at).total_seconds()
                self._metrics.latency.labels(name).observe(max(0.0, latency))
            return PassReport(delivered=1)
        state = mark_failed(self._engine, token, item, failure, now, duration,
                            self._cfg.backoff, self._rng)
        if state is None:
            return PassReport()
        log.warning("delivery %d (%s %s) to %s failed on attempt %d (%s) -> %s", item.id,
                    item.output.kind, item.output.uid, name, item.attempt, failure.reason, state)
        if self._metrics is not None:
            self._metrics.outcome(name, "dead" if state == DEAD else "retry")
        return PassReport(dead=1) if state == DEAD else PassReport(retried=1)


def _in_daemon_threads(calls: Sequence[Callable[[], PassReport]],
                       workers: int) -> list[PassReport]:
    """`calls` run on at most `workers` daemon threads at once; their results in order, or the
    first exception one raised. Daemon threads, unlike a thread pool's, do not hold the
    process at exit when the runner abandons a send at shutdown (`DeliveryRunner.stop`)."""
    results: list[PassReport | None] = [None] * len(calls)
    errors: list[BaseException] = []
    slots = threading.Semaphore(workers)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - raised again on the runner's thread
            errors.append(exc)
        finally:
            slots.release()

    threads = []
    for index in range(len(calls)):
        slots.acquire()
        thread = threading.Thread(target=run, args=(index,), daemon=True,
                                  name=f"delivery-{index}")
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r if r is not None else PassReport() for r in results]
