"""A node with monitoring configured: its HL7 listener takes final reports over MLLP, the
feedback route records a reader's verdict with a token, and /metrics carries the aggregates
and agreement figures."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import numpy as np

from hl7_fhir.hl7v2.mllp import send_mllp
from tests.integration.workers.monitoring.monitoring_support import (
    BEFORE,
    analysed_summary,
    finish_job,
)
from tests.support.net import free_port
from tests.support.waiting import wait_until


def test_node_listener_feedback_route_and_metrics(tmp_path) -> None:
    from infernode.node import Node
    from infernode.settings import load_settings

    web_port = free_port()
    settings = load_settings(
        None, data_dir=str(tmp_path), database={"url": f"sqlite:///{tmp_path / 'db'}"},
        dicom={"port": 0, "spool_dir": str(tmp_path / "spool"), "min_free_bytes": 0},
        web={"port": web_port},
        monitoring={"listener": {"host": "127.0.0.1", "port": 0},
                    "feedback_tokens": ["reader-token"], "aggregate_every_s": 0.2,
                    "metrics_cache_s": 0})
    node = Node.build(settings)
    node.start()
    try:
        now = datetime.now(UTC)
        rng = np.random.default_rng(2)
        cfg = node.settings.workers
        positive = finish_job(node.engine, cfg, now, summary=analysed_summary(
            BEFORE[0], rng, "NODE1", True, 0.9))
        negative = finish_job(node.engine, cfg, now, summary=analysed_summary(
            BEFORE[0], rng, "NODE2", False, 0.1))
        assert node.monitoring is not None and node.monitoring.listener is not None
        oru = ("MSH|^~\\&|RIS|H|NODE|H|20261110101500||ORU^R01|M1|P|2.5.1\r"
               "OBR|1|P1|NODE1|CTHEAD^CT head^L|||||||||||||||||||20261110101000|||F\r"
               "OBX|1|TX|59776-5^Findings^LN||Acute subdural haemorrhage.||||||F\r")
        assert send_mllp(oru, "127.0.0.1", node.monitoring.listener.port).code == "AA"

        url = f"http://127.0.0.1:{web_port}/api/monitoring/feedback"
        verdict = {"job_id": negative, "agree": True, "reader": "dr-a"}
        assert httpx.post(url, json=verdict).status_code == 401
        assert httpx.post(url, json=verdict, headers={
            "Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": "Bearer reader-token"}
        assert httpx.post(url, json=verdict, headers=auth).status_code == 201
        missing = httpx.post(url, json={**verdict, "job_id": "nope"}, headers=auth)
        assert missing.status_code == 404

        figures = httpx.get(f"http://127.0.0.1:{web_port}/api/monitoring/agreement",
                            headers=auth).json()
        assert [(f["tp"], f["fp"], f["fn"], f["tn"]) for f in figures] == [(1, 0, 0, 1)]
        assert positive != negative

        studies = 'infernode_monitoring_studies{model_version="0.2.0",pipeline="ich"} 2.0'
        body = wait_until(lambda: (lambda text: text if studies in text else None)(
            httpx.get(f"http://127.0.0.1:{web_port}/metrics").text), 30,
            "the node's aggregation loop to export today's aggregate")
        assert ('infernode_monitoring_agreement_ratio{measure="sensitivity",'
                'model_version="0.2.0",pipeline="ich"} 1.0') in body
        assert 'infernode_monitoring_positive_ratio{model_version="0.2.0",pipeline="ich"} 0.5' \
            in body
    finally:
        node.stop()
