"""A node with console users, and a TestClient on its web app (the real app, the real
database; the DICOM listener is started so studies can be stored with DCMTK)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infernode.console.auth import hash_password
from tests.integration.infernode.console.console_support import PASSWORDS, ROLES


@pytest.fixture(scope="session")
def console_users() -> list[dict[str, str]]:
    return [{"name": n, "role": ROLES[n], "password_hash": hash_password(p)}
            for n, p in PASSWORDS.items()]


@pytest.fixture
def console_node(tmp_path: Path, console_users: list[dict[str, str]]
                 ) -> Iterator[Callable[..., Any]]:
    """Builds and starts a node (no routing rules unless `workers` says: nothing runs a model)
    with the console's users; extra keyword arguments update its `console` section."""
    from infernode.node import Node
    from infernode.settings import load_settings

    started: list[Node] = []

    def make(db_url: str | None = None, workers: dict[str, Any] | None = None,
             **console: Any) -> Node:
        base = tmp_path / f"node{len(started)}"
        settings = load_settings(
            None, data_dir=str(base),
            database={"url": db_url or f"sqlite:///{base / 'infernode.db'}"},
            dicom={"port": 0, "spool_dir": str(base / "spool"), "min_free_bytes": 0,
                   "quiet_period_s": 30.0},
            web={"enabled": False, "fhir_tokens": ["fhir-secret-token"]},
            workers=workers or {"rules": []},
            console={"users": console_users, **console},
        )
        node = Node.build(settings)
        node.start()
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()

