"""Fixtures shared by every tier: databases (SQLite and the real PostgreSQL), an in-process node
on loopback, a throwaway PKI, and the CI rule that a missing real peer fails the run. Plain
helpers (ports, waiting, PostgreSQL schemas, peers) live in `tests.support`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.postgres import PG_ADMIN_URL, fresh_schema


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    try:
        with fresh_schema() as url:
            yield url
    except sa.exc.OperationalError as exc:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Builds and starts in-process nodes on a free port; stops them at teardown."""
    from infernode.node import Node
    from infernode.settings import load_settings

    started: list[Node] = []

    def make(db_url: str | None = None, **dicom: Any) -> Node:
        base = tmp_path / f"node{len(started)}"
        settings = load_settings(
            None,
            data_dir=str(base),
            database={"url": db_url or f"sqlite:///{base / 'infernode.db'}"},
            dicom={
                "port": 0,
                "spool_dir": str(base / "spool"),
                "min_free_bytes": 0,
                "quiet_period_s": 1.0,
                "assembly_poll_s": 0.1,
                **dicom,
            },
            web={"enabled": False},
        )
        node = Node.build(settings)
        node.start()
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with server (127.0.0.1) and client certificates, for DICOM over TLS."""
    from tests.support.peers.pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------- real peers must be there in CI

REQUIRED_PEERS: dict[str, tuple[str, ...]] = {
    "DCMTK (Debian dcmtk)": ("/usr/bin/storescu", "/usr/bin/storescp", "/usr/bin/echoscu",
                             "/usr/bin/dcmsend", "/usr/bin/dcmcjpls"),
    "Orthanc (Debian orthanc, orthanc-dicomweb)": (
        "/usr/sbin/Orthanc", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    "dicom3tools (Debian dicom3tools)": ("/usr/bin/dciodvfy", "/usr/bin/dcentvfy"),
    "PixelMed (Debian libpixelmed-java)": ("/usr/share/java/pixelmed.jar", "/usr/bin/java"),
}
"""The real DICOM peers and validators the tests use. In CI a missing one fails the run: a
test that skipped for want of its peer would pass nothing while looking green."""

_PEER_WORDS = ("dcmtk", "orthanc", "dicom3tools", "dciodvfy", "pixelmed", "java")


def missing_peers() -> list[str]:
    return [f"{name}: {path}" for name, paths in REQUIRED_PEERS.items()
            for path in paths if not Path(path).exists()]


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") and missing_peers():
        raise pytest.UsageError("CI=true but real peers are missing (run scripts/setup.sh): "
                                + "; ".join(missing_peers()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not (os.environ.get("CI") and report.skipped):
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if any(word in reason.lower() for word in _PEER_WORDS):
        report.outcome = "failed"
        report.longrepr = f"a real peer is missing in CI, which must not skip: {reason}"
