"""The node's HTTP side: health, Prometheus `/metrics`, and a read-only status API."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from infernode.node import Node


def create_app(node: Node) -> FastAPI:
    from infernode.health import create_health_router
    from infernode.security import SecurityMiddleware, is_loopback

    cfg = node.settings.web
    app = FastAPI(title="InferNode", version="0.1.0")
    app.add_middleware(SecurityMiddleware, tokens=cfg.api_tokens,
                       require_token=not is_loopback(cfg.host),
                       tls=cfg.tls_certfile is not None)
    app.include_router(create_health_router(node))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return {"index": node.index.counts(), "dicom_port": node.server.port}

    from hl7_fhir.facade import create_facade_router

    app.include_router(create_facade_router(
        node.engine, node.settings.web.fhir_tokens,
        on_access=node.audit.on_fhir_access if node.audit is not None else None))
    if node.settings.web.stow_tokens:
        from dicom_node.dicomweb.stow_server import StowService, create_stow_router

        service: StowService
        if node.audit is not None:
            from infernode.audit_stow import AuditedStowService

            service = AuditedStowService(
                node.ingestor, ae_title=node.settings.dicom.ae_title,
                max_body_bytes=node.settings.dicom.stow_max_body_bytes,
                submit=node.audit.submit)
        else:
            service = StowService(node.ingestor, ae_title=node.settings.dicom.ae_title,
                                  max_body_bytes=node.settings.dicom.stow_max_body_bytes)
        app.include_router(create_stow_router(service, node.settings.web.stow_tokens))
    from infernode.monitoring_api import create_monitoring_router

    app.include_router(create_monitoring_router(
        node.engine, node.settings.monitoring.feedback_tokens + cfg.api_tokens))
    if node.settings.console.enabled:
        from infernode.console.app import create_console_router

        app.include_router(create_console_router(node))
    return app


def start_web(node: Node) -> uvicorn.Server:
    cfg = node.settings.web
    server = uvicorn.Server(
        uvicorn.Config(create_app(node), host=cfg.host, port=cfg.port, log_level="warning",
                       ssl_certfile=cfg.tls_certfile, ssl_keyfile=cfg.tls_keyfile)
    )
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def stop_web(server: Any) -> None:
    server.should_exit = True
