"""Many clients at once: every submit recorded, nothing lost, no "database is locked"."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.daemon.conftest import Daemon

CLIENTS, SUBMITS = 8, 100


@pytest.mark.slow
def test_eight_clients_submitting_a_hundred_runs_each(daemon: Daemon) -> None:
    project = str(daemon.projects / "p")

    def client(number: int) -> list[tuple[str, str]]:
        done = []
        with daemon.http() as http:
            for i in range(SUBMITS):
                response = http.post(
                    "/v1/runs",
                    json={"kind": "train", "project": project, "hold": True, "priority": i % 3},
                    timeout=60,
                )
                assert response.status_code == 201, response.text
                run_id = response.json()["id"]
                if i % 2:  # every other one cancelled at once, the rest held queued
                    cancelled = http.post(f"/v1/runs/{run_id}/cancel", timeout=60)
                    assert cancelled.status_code == 200, cancelled.text
                    done.append((run_id, "cancelled"))
                else:
                    done.append((run_id, "queued"))
        return done

    with ThreadPoolExecutor(CLIENTS) as pool:
        expected = dict(item for batch in pool.map(client, range(CLIENTS)) for item in batch)

    assert len(expected) == CLIENTS * SUBMITS  # ids are unique
    with daemon.http() as http:
        listed = http.get("/v1/runs", params={"limit": 0}).json()
        health = http.get("/v1/health").json()
    assert {r["id"]: r["state"] for r in listed} == expected
    assert health["runs"]["queued"] == health["runs"]["cancelled"] == CLIENTS * SUBMITS // 2
    assert all(r["state"] == "cancelled" or r["reason"].startswith("held") for r in listed)
    # What the database holds, read directly (WAL lets us read while the daemon runs).
    with sqlite3.connect(daemon.home / "lsdctl.db") as db:
        assert db.execute("SELECT COUNT(*) FROM run").fetchone() == (CLIENTS * SUBMITS,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    log = daemon.log()
    assert "database is locked" not in log and "Traceback" not in log
