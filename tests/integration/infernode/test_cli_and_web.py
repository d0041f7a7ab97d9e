"""The CLI commands and the web endpoints of a node."""

from __future__ import annotations

import httpx
import yaml
from typer.testing import CliRunner

from infernode.cli import app
from tests.support.net import free_port
from tests.support.peers.dcmtk import ct_series, storescu

runner = CliRunner()


def test_check_config_lists_every_problem_with_its_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "dicom": {"port": 70000, "ae_title": "", "peers": [{"ae_title": "X", "hosts": ["nope"]}]},
        "web": {"colour": "red"},
    }))
    result = runner.invoke(app, ["check-config", str(bad)])
    assert result.exit_code == 1
    for key in ("dicom.port", "dicom.ae_title", "dicom.peers.0.hosts", "web.colour"):
        assert key in result.output


def test_check_config_accepts_a_good_toml_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(f'[dicom]\nport = 104\nspool_dir = "{tmp_path}/spool"\n')
    result = runner.invoke(app, ["check-config", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_send_stores_a_folder_and_status_counts_it(node_factory, tmp_path):
    node = node_factory()
    ct_series(tmp_path / "src", slices=5)
    result = runner.invoke(app, ["send", str(tmp_path / "src"), "--port", str(node.server.port)])
    assert result.exit_code == 0, result.output
    assert "sent 5 of 5" in result.output
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": node.settings.database.url}}))
    status = runner.invoke(app, ["status", "-c", str(cfg)])
    assert status.exit_code == 0, status.output
    assert "instances" in status.output and " 5 " in status.output


def test_send_reports_a_refused_association(node_factory, tmp_path):
    node = node_factory()
    ct_series(tmp_path / "src", slices=1)
    result = runner.invoke(app, ["send", str(tmp_path / "src"), "--port", str(node.server.port),
                                 "--calling-ae", "STRANGER"])
    assert result.exit_code == 1
    assert "not all sent" in result.output and "rejected" in result.output


def test_metrics_endpoint_counts_instances_and_rejections(tmp_path):
    from infernode.node import Node
    from infernode.settings import load_settings

    web_port = free_port()
    settings = load_settings(None, database={"url": f"sqlite:///{tmp_path / 'db'}"},
                             dicom={"port": 0, "spool_dir": str(tmp_path / "spool"),
                                    "min_free_bytes": 0},
                             web={"port": web_port})
    node = Node.build(settings)
    node.start()
    try:
        files = ct_series(tmp_path / "src", slices=3)
        assert storescu(node.server.port, files).returncode == 0
        assert storescu(node.server.port, files[:1], calling="STRANGER").returncode != 0
        body = httpx.get(f"http://127.0.0.1:{web_port}/metrics").text
        assert 'infernode_instances_received_total{outcome="stored"} 3.0' in body
        assert 'infernode_association_rejections_total{reason="calling_ae"} 1.0' in body
        assert "infernode_store_seconds_count 3.0" in body
        assert "infernode_active_associations" in body
        status = httpx.get(f"http://127.0.0.1:{web_port}/api/status").json()
        assert status["index"]["instances"] == 3
    finally:
        node.stop()


def test_node_on_postgresql_stores_and_indexes(pg_url, node_factory, tmp_path):
    node = node_factory(db_url=pg_url)
    files = ct_series(tmp_path / "src", slices=4)
    assert storescu(node.server.port, files).returncode == 0
    assert node.index.counts()["instances"] == 4


def test_fhir_facade_is_served_and_locked(tmp_path):
    from infernode.node import Node
    from infernode.settings import load_settings

    web_port = free_port()
    settings = load_settings(None, data_dir=str(tmp_path),
                             database={"url": f"sqlite:///{tmp_path / 'db'}"},
                             dicom={"port": 0, "spool_dir": str(tmp_path / "spool"),
                                    "min_free_bytes": 0},
                             web={"port": web_port, "fhir_tokens": ["ehr-token"]})
    node = Node.build(settings)
    node.start()
    try:
        base = f"http://127.0.0.1:{web_port}/fhir"
        meta = httpx.get(f"{base}/metadata")
        assert meta.status_code == 200
        assert meta.json()["resourceType"] == "CapabilityStatement"
        assert httpx.get(f"{base}/DiagnosticReport?status=preliminary").status_code == 401
        ok = httpx.get(f"{base}/DiagnosticReport?status=preliminary",
                       headers={"Authorization": "Bearer ehr-token"})
        assert ok.status_code == 200
        assert ok.json()["resourceType"] == "Bundle" and ok.json()["total"] == 0
    finally:
        node.stop()
