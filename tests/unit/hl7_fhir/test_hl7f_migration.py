"""The Alembic revision creates exactly the tables `store.metadata` describes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

import hl7_fhir.migrations
from hl7_fhir.facade.store import metadata

REVISION = Path(hl7_fhir.migrations.__file__).parent / "hl7f_0001_fhir_resources.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hl7f_0001", REVISION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_revision_header() -> None:
    module = _load()
    assert module.down_revision is None
    assert module.branch_labels == ("hl7_fhir",)


def test_upgrade_matches_metadata_and_downgrade_drops(tmp_path: Path) -> None:
    module = _load()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'mig.db'}")
    with engine.begin() as conn:
        context = MigrationContext.configure(conn)
        with Operations.context(context):
            module.upgrade()
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        with Operations.context(context):
            module.downgrade()
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()
