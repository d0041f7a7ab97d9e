"""The delivery section: typed destinations, their kinds and filters, and the backoff curve."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from workers.config import WorkersConfig
from workers.outbox.claims import DueDelivery, Failure, OutputFacts, next_delay_s
from workers.outbox.config import BackoffConfig, DeliveryConfig, FacadeDestination
from workers.outbox.runner import _batches


def test_the_default_is_the_node_own_facade_only() -> None:
    cfg = WorkersConfig().delivery
    assert [(d.type, d.name) for d in cfg.destinations] == [("facade", "facade")]
    assert cfg.destinations[0].takes("fhir-bundle", "ich")
    assert not cfg.destinations[0].takes("dicom", "ich")


def test_destinations_are_typed_with_default_kinds_and_pipeline_filters() -> None:
    cfg = DeliveryConfig.model_validate({"destinations": [
        {"type": "dicom", "name": "pacs", "host": "pacs", "port": 104, "called_ae": "PACS",
         "pipelines": ["ich"]},
        {"type": "stow", "base_url": "http://pacs/dicom-web"},
        {"type": "fhir", "base_url": "http://ehr/fhir", "token_url": "http://idp/token",
         "client_id": "node", "client_secret": "hush-1234"},
        {"type": "mllp", "host": "ris", "port": 2575},
        {"type": "webhook", "url": "http://pager/hook", "token": "t", "enabled": False},
        {"type": "fhir-task", "base_url": "http://ehr/fhir"},
        {"type": "facade"},
    ]})
    kinds = {d.name: d.effective_kinds() for d in cfg.destinations}
    dicom = ("dicom", "dicom-overlay", "dicom-gsps")  # SEG/SR/KOS, overlay series, GSPS
    assert kinds == {"pacs": dicom, "stow": dicom, "fhir": ("fhir-bundle",),
                     "mllp": ("hl7-oru",), "webhook": ("priority-signal",),
                     "fhir-task": ("priority-signal",), "facade": ("fhir-bundle",)}
    pacs, webhook = cfg.destination("pacs"), cfg.destination("webhook")
    assert pacs is not None and webhook is not None
    assert pacs.takes("dicom", "ich") and not pacs.takes("dicom", "fracture")
    assert not webhook.takes("priority-signal", "ich")  # disabled
    # secrets never show when the configuration is printed or dumped
    assert "hush-1234" not in repr(cfg) and "hush-1234" not in str(cfg.model_dump(mode="json"))


@pytest.mark.parametrize("bad", [
    {"type": "mllp", "host": "ris", "port": 2575, "kinds": ["dicom"]},
    {"type": "fhir", "base_url": "http://ehr", "token_url": "http://idp/token"},
    {"type": "fhir", "base_url": "http://ehr", "token": "t", "token_url": "u",
     "client_id": "c", "client_secret": "s"},
    {"type": "dicom", "host": "pacs", "port": 104, "called_ae": "A_TITLE_LONGER_THAN_16"},
    {"type": "carrier-pigeon"},
    {"type": "facade", "name": "bad name"},
])
def test_invalid_destinations_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DeliveryConfig.model_validate({"destinations": [bad]})


def test_destination_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="unique"):
        DeliveryConfig.model_validate({"destinations": [
            {"type": "dicom", "host": "a", "port": 104, "called_ae": "A"},
            {"type": "dicom", "host": "b", "port": 104, "called_ae": "B"}]})


def test_backoff_doubles_to_an_hour_with_bounded_jitter_and_honours_retry_after() -> None:
    plain = BackoffConfig(jitter=0)
    assert [plain.delay_s(n) for n in range(1, 9)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600]
    jittery = BackoffConfig(jitter=0.1)
    rng = random.Random(7)
    transient = Failure(False, "transient", "peer down")
    delays = [next_delay_s(jittery, 3, transient, rng) for _ in range(200)]
    assert min(delays) >= 216 and max(delays) <= 264 and len(set(delays)) > 100
    asked = Failure(False, "transient:503", "busy", retry_after_s=900)
    assert next_delay_s(plain, 1, asked, rng) == 900
    flood = Failure(False, "transient:503", "busy", retry_after_s=10 ** 6)
    assert next_delay_s(plain, 1, flood, rng) == 3600


def _due(i: int, destination: str, job: str) -> DueDelivery:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    output = OutputFacts(i, job, "1.2.3", "ich", "dicom", f"1.2.3.{i}", None, None, now)
    return DueDelivery(i, destination, 1, now, output)


def test_a_job_dicom_outputs_travel_together_and_other_kinds_one_by_one() -> None:
    cfg = DeliveryConfig.model_validate({"destinations": [
        {"type": "dicom", "name": "pacs", "host": "p", "port": 104, "called_ae": "P"},
        {"type": "facade"}]})
    dests = {d.name: d for d in cfg.destinations}
    items = [_due(1, "pacs", "a"), _due(2, "facade", "a"), _due(3, "pacs", "b"),
             _due(4, "pacs", "a"), _due(5, "facade", "a")]
    batches = _batches(items, dests)
    assert [[i.id for i in b] for b in batches["pacs"]] == [[1, 4], [3]]
    assert [[i.id for i in b] for b in batches["facade"]] == [[2], [5]]
    assert isinstance(dests["facade"], FacadeDestination)


def test_the_documented_example_is_a_valid_configuration() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[4] / "docs" / "DELIVERY.md").read_text()
    match = re.search(r"### Example\n\n```yaml\n(.*?)```", text, re.S)
    assert match is not None
    cfg = WorkersConfig.model_validate(yaml.safe_load(match.group(1))["workers"])
    assert [d.type for d in cfg.delivery.destinations] == [
        "facade", "dicom", "stow", "fhir", "sender", "mllp", "webhook", "fhir-task"]
    assert cfg.delivery.backoff.max_delay_s == 3600
