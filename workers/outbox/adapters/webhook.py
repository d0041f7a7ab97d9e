"""The priority signal to a webhook: one JSON POST per study (RFC 9110 POST; bearer token per
RFC 6750). The body names the study by UID and carries the pipeline's flag text, never patient
data:

    {"schema_version": 1, "event": "priority-signal", "study_instance_uid": "1.2...",
     "pipeline": "ich", "job_id": "...", "flag": "critical: ICH suspected",
     "priority": "stat", "recorded_at": "2026-01-02T03:04:05+00:00"}

2xx is delivered; 408, 425, 429 and 5xx (and no answer) are retried; other statuses are
permanent (a wrong URL or token does not fix itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from workers.outbox.adapters.base import Sent
from workers.outbox.claims import DueDelivery, Failure
from workers.outbox.config import WebhookDestination

_TRANSIENT = frozenset({408, 425, 429})


def signal_payload(item: DueDelivery) -> dict[str, Any]:
    """The JSON body of the signal."""
    out = item.output
    return {"schema_version": 1, "event": "priority-signal",
            "study_instance_uid": out.study_instance_uid, "pipeline": out.pipeline,
            "job_id": out.job_id, "flag": out.note or "", "priority": "stat",
            "recorded_at": out.recorded_at.isoformat()}


class WebhookAdapter:
    """POSTs priority signals to one URL."""

    def __init__(self, dest: WebhookDestination) -> None:
        self._url = dest.url
        headers = {"Accept": "application/json"}
        if dest.token is not None:
            headers["Authorization"] = f"Bearer {dest.token.get_secret_value()}"
        self._http = httpx.Client(timeout=dest.timeout_s, headers=headers,
                                  follow_redirects=False)

    def _post(self, item: DueDelivery) -> Failure | None:
        try:
            response = self._http.post(self._url, json=signal_payload(item))
        except httpx.TimeoutException:
            return Failure(False, "transient", "webhook timed out")
        except httpx.TransportError as exc:
            return Failure(False, "transient", f"webhook unreachable: {type(exc).__name__}")
        code = response.status_code
        if 200 <= code < 300:
            return None
        reason = f"webhook answered HTTP {code}"
        if code >= 500 or code in _TRANSIENT:
            return Failure(False, f"transient:{code}", reason)
        return Failure(True, f"permanent:{code}", reason)

    def send(self, items: Sequence[DueDelivery]) -> list[Sent]:
        return [Sent(item.id, self._post(item)) for item in items]

    def close(self) -> None:
        self._http.close()
