"""The console's pages on a node holding a study stored over DICOM (DCMTK storescu): what each
role sees (a viewer never a patient identifier), the audit of patient-data views, the
Configuration page's redaction, and the Models page's pipeline switch honoured by routing."""

from __future__ import annotations

from datetime import UTC, datetime

import pydicom
import pytest

from dicom_node.events import SeriesSummary, StudyReady
from infernode.audit import AuditLog, Category
from infernode.console.admin_pages import REDACTED, redact
from infernode.console.switches import apply_switches
from tests.integration.infernode.console.console_support import client_for, log_in, page_csrf
from tests.support.peers.dcmtk import ct_series, storescu

PATIENT = ("Phantom^Head", "PHANTOM-0001", "19600101", "ACC0001")  # synth.StudyIdentity


@pytest.fixture
def stored(console_node, tmp_path):
    node = console_node()
    files = ct_series(tmp_path / "src", slices=3)
    assert storescu(node.server.port, files).returncode == 0
    return node, str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def test_viewer_sees_no_patient_identifier_and_operator_does(stored):
    node, uid = stored
    viewer = client_for(node)
    assert log_in(viewer, "vera").status_code == 303
    pages = [viewer.get("/studies"), viewer.get(f"/studies/{uid}"), viewer.get("/jobs"),
             viewer.get("/deliveries"), viewer.get("/")]
    for page in pages:
        assert page.status_code == 200
        for value in PATIENT:
            assert value not in page.text and value.replace("^", " ") not in page.text
    assert "•••" in pages[1].text and uid in pages[1].text
    assert viewer.get("/studies", params={"accession": "ACC0001"}).status_code == 403
    assert viewer.get("/config").status_code == 403
    assert viewer.get("/actions/job-retry/x").status_code == 403

    operator = client_for(node, "10.1.1.1")
    assert log_in(operator, "otto").status_code == 303
    page = operator.get(f"/studies/{uid}")
    for value in PATIENT:
        assert value in page.text
    found = operator.get("/studies", params={"accession": "ACC0001", "modality": "CT"})
    assert uid in found.text
    assert uid not in operator.get("/studies", params={"accession": "OTHER"}).text
    assert operator.get("/config").status_code == 403  # admin only

    views = AuditLog(node.engine).query(category=str(Category.CONSOLE), subject=uid)
    assert [(e.actor, e.action, e.detail["patient_identifiers_shown"]) for e in views] == [
        ("otto", "study_view", True), ("vera", "study_view", False)]


def test_every_page_renders_for_an_admin(stored):
    node, uid = stored
    admin = client_for(node)
    assert log_in(admin, "ada").status_code == 303
    for path, text in (("/", "Studies waiting"), ("/overview/live", "Spool free"),
                       ("/studies", uid), (f"/studies/{uid}", "Series"),
                       ("/jobs", "Jobs"), ("/deliveries?state=dead", "Deliveries"),
                       ("/models", "ich-demo"), ("/routing", "Exclusions"),
                       (f"/routing?study={uid}", "Not routed yet"),
                       ("/routing?study=1.2.3.4", "holds no instance"),
                       ("/config", "check-config")):
        page = admin.get(path)
        assert page.status_code == 200, path
        assert text in page.text, path
    assert "NOT FOR CLINICAL USE" in admin.get("/models").text
    assert admin.get("/studies/1.2.3.4").status_code == 404


def test_configuration_page_redacts_secrets(stored):
    node, _ = stored
    admin = client_for(node)
    log_in(admin, "ada")
    text = admin.get("/config").text
    assert "fhir-secret-token" not in text and REDACTED in text
    assert "$argon2" not in text  # users' password hashes
    assert "warning dicom.require_known_peers" in text or "OK" in text
    assert redact({"database": {"url": "postgresql+psycopg://u:pw@db:5432/x"},
                   "broker_url": "redis://:hunter2@redis:6379/0", "token": None,
                   "tls": {"key_file": "/etc/k.pem"}, "client_secret": "abc"}) == {
        "database": {"url": f"postgresql+psycopg://u:{REDACTED}@db:5432/x"},
        "broker_url": f"redis://:{REDACTED}@redis:6379/0", "token": None,
        "tls": {"key_file": "/etc/k.pem"}, "client_secret": REDACTED}


def test_a_pipeline_disabled_on_the_models_page_gets_no_new_jobs(stored):
    node, _ = stored
    admin = client_for(node)
    log_in(admin, "ada")
    operator = client_for(node, "10.1.1.2")
    log_in(operator, "otto")
    refused = operator.post("/models/ich/switch",
                            data={"enabled": "false", "csrf": page_csrf(operator.get("/").text)})
    assert refused.status_code == 403  # admins only
    done = admin.post("/models/ich/switch",
                      data={"enabled": "false", "csrf": page_csrf(admin.get("/models").text)})
    assert done.status_code == 200 and "ich disabled" in done.text
    assert "DISABLED" in admin.get("/models").text

    from workers.config import WorkersConfig
    from workers.routing import explain

    cfg = WorkersConfig()  # the default rules (this node has none)
    switched = apply_switches(node.engine, cfg)
    assert not any(r.enabled for r in switched.rules if r.pipeline == "ich")
    head_ct = StudyReady(study_instance_uid="1.2.3", amendment=0,
                         completed_at=datetime(2026, 12, 4, tzinfo=UTC), series=(SeriesSummary(
        series_instance_uid="1.2.3.1", modality="CT", body_part_examined="HEAD",
        series_description="Head 5mm axial", protocol_name=None,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        sop_class_uids=("1.2.840.10008.5.1.4.1.1.2",),
        instance_count=32, slice_thickness=5.0, calling_ae=None, called_ae=None),))
    assert "ich" in [d.pipeline for d in explain(head_ct, cfg.rules, cfg.exclusions).decisions]
    assert "ich" not in [d.pipeline for d in explain(head_ct, switched.rules,
                                                        switched.exclusions).decisions]
    admin.post("/models/ich/switch",
               data={"enabled": "true", "csrf": page_csrf(admin.get("/models").text)})
    assert apply_switches(node.engine, cfg) is cfg
    actions = [e.action for e in AuditLog(node.engine).query(category=str(Category.CONSOLE))]
    assert "pipeline_disabled" in actions and "pipeline_enabled" in actions
