"""Database engine and schema migrations for every package.

SQLite (WAL, synchronous=FULL: a committed index row survives power loss) is the embedded default;
PostgreSQL for more than one host. Each package keeps its Alembic revisions in its own
`migrations/` folder on a branch named after it; `migrate` upgrades every branch to its head.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from workers.db import make_engine

MIGRATING_PACKAGES = ("dicom_node", "workers", "hl7_fhir")


def create_engine(url: str) -> Engine:
    """The node's engine for `url` (`workers.db.make_engine`: the one engine factory)."""
    return make_engine(url)


def _version_locations() -> list[str]:
    found = []
    for name in MIGRATING_PACKAGES:
        module = importlib.import_module(name)
        folder = Path(module.__file__ or "").parent / "migrations"
        if folder.is_dir() and any(folder.glob("*.py")):
            found.append(str(folder))
    # The composition root's own tables (audit trail, console users and sessions).
    found.append(str(Path(__file__).parent / "migrations" / "versions"))
    return found


def alembic_config(engine_connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(_version_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["connection"] = engine_connection
    return cfg


def migrate(engine: Engine) -> None:
    """Brings every package's tables to their newest revision (idempotent)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "heads")
