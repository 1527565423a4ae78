"""The SQLite store: WAL, schema version, migrations, and the indexes lists rely on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from daemon import store as store_module
from daemon.store import Store, StoreError
from daemon.tables import SCHEMA_VERSION


def test_a_new_database_is_wal_at_the_current_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "lsdctl.db")
    assert store.version() == SCHEMA_VERSION
    store.close()
    with sqlite3.connect(tmp_path / "lsdctl.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"project", "run", "run_config", "attempt", "metric", "block"} <= tables
        assert {"gpu_reservation", "dependency", "schema_version"} <= tables
        # Listing runs newest first by state or project walks an index (unfiltered: the
        # rowid, backwards, stopping at the limit).
        for where in ("state = 'queued'", "project_id = 1"):
            plan = " ".join(
                str(r[-1])
                for r in db.execute(
                    f"EXPLAIN QUERY PLAN SELECT * FROM run WHERE {where} ORDER BY seq DESC LIMIT 50"
                )
            )
            assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
        plan = " ".join(
            str(r[-1])
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM metric WHERE run_seq = 1 AND name = 'loss' "
                "AND step > 10 ORDER BY step"
            )
        )
        assert "USING INDEX" in plan, plan


def test_an_older_database_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "lsdctl.db").close()

    def add_note(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE run ADD COLUMN note TEXT"))

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(store_module.MIGRATIONS, SCHEMA_VERSION, add_note)
    store = Store(tmp_path / "lsdctl.db")
    assert store.version() == SCHEMA_VERSION + 1
    store.close()
    with sqlite3.connect(tmp_path / "lsdctl.db") as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(run)")}
    assert "note" in columns


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "lsdctl.db").close()
    with sqlite3.connect(tmp_path / "lsdctl.db") as db:
        db.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 5,))
    with pytest.raises(StoreError, match="newer than this lsdctl"):
        Store(tmp_path / "lsdctl.db")
