"""Database engine and schema migrations for every package.

SQLite (WAL, synchronous=FULL: a committed index row survives power loss) is the embedded default;
PostgreSQL for more than one host. Each package keeps its Alembic revisions in its own
`migrations/` folder on a branch named after it; `migrate` upgrades every branch to its head.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Engine

from workers.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (with Mako and Pygments, about 10 MB) is imported by the functions that migrate or
# read the schema's state, not here: an acceptor process only needs `create_engine`.

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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(_version_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["connection"] = engine_connection
    return cfg


def migrate(engine: Engine) -> None:
    """Brings every package's tables to their newest revision (idempotent)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "heads")


@dataclass(frozen=True)
class BranchState:
    """Where one package's branch of the schema stands: `current` is None when none of its
    revisions was applied yet."""

    branch: str
    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def schema_state(engine: Engine) -> list[BranchState]:
    """Each package's branch with its applied and newest revision, in branch order. Reads
    only: nothing is migrated."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as conn:
        script = ScriptDirectory.from_config(alembic_config(conn))
        applied = set(MigrationContext.configure(conn).get_current_heads())
    states = []
    for head in script.get_heads():
        lineage = [rev for rev in script.iterate_revisions(head, "base") if rev is not None]
        branch = next((label for rev in lineage for label in sorted(rev.branch_labels)), head)
        current = next((rev.revision for rev in lineage if rev.revision in applied), None)
        states.append(BranchState(branch=branch, current=current, head=head))
    return sorted(states, key=lambda state: state.branch)
