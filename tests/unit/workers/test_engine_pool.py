"""The SQLite engine hands out the pooled connection returned last (LIFO), so the receive path's
index writes keep using a connection whose page cache another connection's commit has not made
stale (`workers.db.make_engine`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from workers.db import make_engine


def test_the_sqlite_pool_hands_out_the_connection_returned_last(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'index.db'}")
    try:
        first, second = engine.connect(), engine.connect()
        first_driver = first.connection.dbapi_connection
        second_driver = second.connection.dbapi_connection
        assert first_driver is not second_driver
        first.close()
        second.close()  # returned last
        for _ in range(3):
            with engine.connect() as again:
                again.execute(text("SELECT 1"))
                assert again.connection.dbapi_connection is second_driver
    finally:
        engine.dispose()


def test_an_in_memory_sqlite_engine_still_opens():
    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()
