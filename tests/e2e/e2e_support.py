"""Helpers of the end-to-end tests and of `bench/e2e.py`: a whole node configured like a
hospital install (a PACS to send results to, an EHR FHIR endpoint, a priority webhook, its own
token-locked FHIR facade on a web port), and read-back helpers for what reached the peers.

The node runs in the calling process (`Node.build` / `start` / `stop`); the peers are real:
Orthanc (tests/support/peers/orthanc.py) and loopback HTTP servers (the outbox tests' `http_peer`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from infernode.node import Node
from infernode.settings import Settings, load_settings
from tests.integration.workers.outbox.outbox_support import (  # noqa: F401 - re-exported
    HttpPeer,
    http_peer,
)
from tests.support.peers.dcmtk import run, storescu
from tests.support.peers.orthanc import OrthancServer
from tests.support.waiting import wait_until  # noqa: F401 - re-exported
from workers.db import jobs as job_table
from workers.outbox.tables import deliveries as delivery_table
from workers.outbox.tables import outputs as output_table

REPO = Path(__file__).resolve().parents[2]
FACADE_TOKEN = "e2e-facade-token"
"""Bearer token the node's facade accepts (web.fhir_tokens)."""
EHR_TOKEN = "e2e-ehr-push-token"
"""Bearer token the node sends to the EHR FHIR endpoint."""


@dataclass(frozen=True)
class NodePlan:
    """What the node under test is wired to. `quiet_period_s` replaces the default rules'
    clinical quiet periods (15-20 s) so a test does not wait for them; `senders` are the
    calling AE titles allowed from loopback."""

    folder: Path
    pacs: OrthancServer
    web_port: int
    quiet_period_s: float = 2.0
    senders: tuple[str, ...] = ("ORTHANC",)
    fhir_url: str | None = None
    webhook_url: str | None = None
    node: dict[str, Any] = field(default_factory=dict)
    """Extra overrides of `dicom` / `inference` / `workers` keys, merged last."""


def node_settings(plan: NodePlan) -> Settings:
    """Settings of a node on SQLite under `plan.folder`, delivering SEG/SR/KOS to the Orthanc
    over C-STORE, the report Bundle to its facade (and to `fhir_url`), and the priority signal
    to `webhook_url`."""
    destinations: list[dict[str, Any]] = [
        {"type": "facade"},
        {"type": "dicom", "name": "pacs", "host": "127.0.0.1", "port": plan.pacs.dicom_port,
         "called_ae": plan.pacs.aet, "calling_ae": "INFERNODE"},
    ]
    if plan.fhir_url:
        destinations.append({"type": "fhir", "name": "ehr", "base_url": plan.fhir_url,
                             "token": EHR_TOKEN})
    if plan.webhook_url:
        destinations.append({"type": "webhook", "name": "pager", "url": plan.webhook_url})
    overrides: dict[str, Any] = {
        "data_dir": str(plan.folder),
        "database": {"url": f"sqlite:///{plan.folder / 'infernode.db'}"},
        "dicom": {
            "port": 0, "spool_dir": str(plan.folder / "spool"), "min_free_bytes": 0,
            "quiet_period_s": plan.quiet_period_s,
            "peers": [{"ae_title": ae, "hosts": ["127.0.0.1"]} for ae in plan.senders],
        },
        "web": {"enabled": True, "port": plan.web_port, "fhir_tokens": [FACADE_TOKEN]},
        # absolute, so the node finds the demo model whatever the working directory
        "inference": {"model_paths": [str(REPO / "models")]},
        "workers": {"delivery": {"destinations": destinations}},
    }
    for section, values in plan.node.items():
        overrides.setdefault(section, {}).update(values)
    settings = load_settings(None, **overrides)
    rules = [r.model_copy(update={"quiet_period_s": plan.quiet_period_s})
             for r in settings.workers.rules]
    settings.workers = settings.workers.model_copy(update={"rules": rules})
    return settings


@contextmanager
def running_node(settings: Settings) -> Iterator[Node]:
    """A started node; stopped on exit."""
    node = Node.build(settings)
    node.start()
    try:
        yield node
    finally:
        node.stop()


# ---------------------------------------------------------------- the node's own state


def jobs(node: Node) -> dict[str, dict[str, Any]]:
    """Study Instance UID -> its job row (state, result, stage timestamps as datetimes)."""
    with node.engine.connect() as conn:
        rows = conn.execute(sa.select(job_table)).mappings()
        return {r["study_instance_uid"]: dict(r) for r in rows}


def deliveries(node: Node) -> list[dict[str, Any]]:
    """Every delivery row with its output's study, kind and uid."""
    query = sa.select(
        delivery_table.c.destination, delivery_table.c.state, delivery_table.c.attempts,
        delivery_table.c.last_reason, delivery_table.c.delivered_at,
        output_table.c.study_instance_uid, output_table.c.kind, output_table.c.uid,
    ).join(output_table, output_table.c.id == delivery_table.c.output_id)
    with node.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def all_delivered(node: Node, studies: set[str]) -> bool:
    """True when every study has a finished job whose outputs are all planned and delivered."""
    found = jobs(node)
    if not studies <= set(found) or any(found[s]["state"] != "succeeded" for s in studies):
        return False
    with node.engine.connect() as conn:
        unplanned = conn.execute(sa.select(sa.func.count()).select_from(output_table).where(
            output_table.c.planned_at.is_(None))).scalar_one()
    rows = deliveries(node)
    return unplanned == 0 and bool(rows) and all(r["state"] == "delivered" for r in rows)


def settled(node: Node, studies: set[str]) -> bool:
    """True when every study has a finished job (whatever its outcome), every output is
    planned, and each study has delivery rows, all delivered or dead: nothing left to wait for.
    """
    found = jobs(node)
    if not studies <= set(found) or any(
            found[s]["state"] not in ("succeeded", "failed", "dead_lettered") for s in studies):
        return False
    with node.engine.connect() as conn:
        unplanned = conn.execute(sa.select(sa.func.count()).select_from(output_table).where(
            output_table.c.planned_at.is_(None))).scalar_one()
    rows = deliveries(node)
    with_rows = {r["study_instance_uid"] for r in rows}
    answered = {s for s in studies if found[s]["outcome"] is not None}
    return (unplanned == 0 and answered <= with_rows
            and all(r["state"] in ("delivered", "dead") for r in rows))


def send_and_settle(node: Node, studies: Mapping[str, Sequence[Path]], calling: str,
                    what: str, timeout: float = 600, own_syntax: bool = False) -> None:
    """C-STOREs each study's files to the node with DCMTK storescu as `calling` (with
    `own_syntax`, DCMTK dcmsend, which proposes each file's own transfer syntax: JPEG, JPEG-LS,
    JPEG 2000, RLE, deflate), then waits until every study is `settled`."""
    for uid, files in studies.items():
        if own_syntax:
            sent = run(["dcmsend", "-aet", calling, "-aec", "INFERNODE", "127.0.0.1",
                        str(node.server.port), *map(str, files)], timeout=300)
            assert sent.returncode == 0, (uid, sent.stderr[-2000:])
            continue
        sent = storescu(node.server.port, list(files), calling=calling)
        assert sent.returncode == 0, (uid, sent.stdout[-2000:])
    wait_until(lambda: settled(node, set(studies)), timeout=timeout, what=what)


def content_items(item: Any, code: str) -> list[Any]:
    """SR content items (any depth) whose concept name has code value `code`."""
    found = []
    for child in item.get("ContentSequence", []):
        names = child.get("ConceptNameCodeSequence")
        if names and names[0].CodeValue == code:
            found.append(child)
        found += content_items(child, code)
    return found


def job_result(row: dict[str, Any]) -> dict[str, Any]:
    """A job row's result as a dict (SQLite hands JSON back as text)."""
    value = row["result"]
    return value if isinstance(value, dict) else dict(json.loads(value))


# ---------------------------------------------------------------- the facade


@dataclass(frozen=True)
class Facade:
    """The node's read-only FHIR facade (`/fhir` on its web port)."""

    web_port: int
    token: str = FACADE_TOKEN

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/fhir"

    def search(self, resource: str, **params: str) -> dict[str, Any]:
        """A searchset Bundle (FHIR R4 3.1.0.9); raises on a non-200 answer."""
        response = httpx.get(f"{self.base_url}/{resource}", params=params, timeout=10.0,
                             headers={"Authorization": f"Bearer {self.token}"})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def resources(self, resource: str, **params: str) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.search(resource, **params).get("entry", [])]


# ---------------------------------------------------------------- the PACS


def orthanc_study(pacs: OrthancServer, study_instance_uid: str) -> str | None:
    """Orthanc's identifier of the study with this Study Instance UID, or None."""
    with pacs.client() as http:
        response = http.post("/tools/lookup", content=study_instance_uid)
        response.raise_for_status()
        hits = [h for h in response.json() if h.get("Type") == "Study"]
    return str(hits[0]["ID"]) if hits else None


def study_series(pacs: OrthancServer, study_instance_uid: str) -> list[dict[str, Any]]:
    """The series Orthanc holds in that study (its /studies/{id}/series answer)."""
    orthanc_id = orthanc_study(pacs, study_instance_uid)
    if orthanc_id is None:
        return []
    series: list[dict[str, Any]] = pacs.get(f"/studies/{orthanc_id}/series")
    return series


def download_series(pacs: OrthancServer, series: dict[str, Any], folder: Path) -> list[Path]:
    """Writes each instance of an Orthanc series as stored (/instances/{id}/file)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for orthanc_id in series["Instances"]:
        path = folder / f"{orthanc_id}.dcm"
        path.write_bytes(pacs.instance_file(orthanc_id))
        paths.append(path)
    return paths


def dciodvfy_errors(path: Path) -> list[str]:
    """The `Error` lines of `dciodvfy -new` (dicom3tools) on a file: the STANDARDS.md gate."""
    check = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True,
                           errors="replace",
                           timeout=60, check=False)
    lines = (check.stdout + check.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")]
