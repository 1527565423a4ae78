"""Blocks and checkpoints of a run: block events tailed with their grid, task and error,
GET /v1/runs/{id}/blocks and /checkpoints, and a schema-1 database migrated in place."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import launcher
from daemon.store import Store
from daemon.tables import SCHEMA_VERSION, BlockRow, RunRow
from daemon.tailer import Tailer
from daemon.views import block_map
from lsdctl.client import RunNotFound
from tests.daemon.conftest import Daemon


def _write(path: Path, *events: dict[str, Any]) -> None:
    with path.open("a") as f:
        for event in events:
            f.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")


def _grid(task: str, shape: list[int]) -> dict[str, Any]:
    total = shape[0] * shape[1] * shape[2]
    return {
        "type": "blockgrid",
        "task": task,
        "shape": shape,
        "total": total,
        "block": [8, 8, 8],
        "offset": [0, 0, 0],
    }


def _block(task: str, index: int, grid: list[int], status: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "block",
        "id": f"{task}:{index}",
        "task": task,
        "grid": grid,
        "status": status,
        "worker": 1,
        **extra,
    }


def _run(store: Store, run_dir: Path, state: str = "running", **fields: Any) -> RunRow:
    with store.session() as session:
        project = store.project(session, str(run_dir.parent.parent), "p")
        assert project.id is not None
        run = RunRow(
            id=run_dir.name,
            project_id=project.id,
            kind="predict",
            state=state,
            run_dir=str(run_dir),
            created=time.time(),
            attempts=1,
            **fields,
        )
        session.add(run)
        session.commit()
        return run


def test_block_events_keep_their_grid_task_and_last_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "lsdctl.db")
    run_dir = tmp_path / "p" / "runs" / "predict-1"
    run_dir.mkdir(parents=True)
    run = _run(store, run_dir)
    events = run_dir / "events.jsonl"
    _write(
        events,
        _grid("predict-a", [1, 2, 3]),
        _block("predict-a", 0, [0, 0, 0], "running"),
        _block("predict-a", 0, [0, 0, 0], "done", seconds=1.5),
        _block("predict-a", 4, [0, 1, 1], "running"),
        _block("predict-a", 4, [0, 1, 1], "failed", error="Traceback: boom"),
        # Outside the mask: finished without work.
        _block("predict-a", 2, [0, 0, 2], "running"),
        _block("predict-a", 2, [0, 0, 2], "skipped", seconds=0.01),
        # An event from before schema 2 carried no task and no grid: both are derived.
        {"type": "block", "id": "predict-a:5", "status": "running", "worker": 2},
    )
    tailer = Tailer(store)
    with store.session() as session:
        row = session.get(RunRow, run.seq)
        assert row is not None
        assert tailer.tail(session, row, until_end=True) == 8
        session.commit()
        (task,) = block_map(store, session, row, None).tasks
    assert (task.task, task.shape, task.total) == ("predict-a", [1, 2, 3], 6)
    assert task.counts == {"pending": 2, "running": 1, "done": 1, "skipped": 1, "failed": 1}
    done, skipped, failed, derived = task.blocks
    assert (skipped.index, skipped.status, skipped.seconds) == (2, "skipped", 0.01)
    assert (done.index, done.grid, done.status, done.seconds, done.error) == (
        0,
        [0, 0, 0],
        "done",
        1.5,
        None,
    )
    assert (failed.grid, failed.status, failed.error) == ([0, 1, 1], "failed", "Traceback: boom")
    assert (derived.index, derived.grid, derived.worker) == (5, [0, 1, 2], "2")

    # The failed block is retried: its error stays while it runs, and goes once it is done.
    _write(events, _block("predict-a", 4, [0, 1, 1], "running"))
    with store.session() as session:
        row = session.get(RunRow, run.seq)
        assert row is not None
        tailer.tail(session, row)
        session.commit()
        block = session.get(BlockRow, (run.seq, "predict-a:4"))
        assert block is not None and (block.status, block.error) == ("running", "Traceback: boom")
    _write(events, _block("predict-a", 4, [0, 1, 1], "done", seconds=0.5))
    with store.session() as session:
        row = session.get(RunRow, run.seq)
        assert row is not None
        tailer.tail(session, row)
        session.commit()
        (task,) = block_map(store, session, row, None).tasks
    assert task.counts == {"pending": 2, "running": 1, "done": 2, "skipped": 1, "failed": 0}
    store.close()


def test_a_schema_1_database_gains_the_block_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "lsdctl.db"
    store = Store(path)
    run_dir = tmp_path / "p" / "runs" / "predict-1"
    run = _run(store, run_dir, state="succeeded")
    store.close()
    # Take the database back to what schema 1 had (without schema 3's additions either).
    with sqlite3.connect(path) as db:
        for column in ("task", "grid", "error", "seconds"):
            db.execute(f"ALTER TABLE block DROP COLUMN {column}")
        for column in ("best_step", "best_voi", "best_threshold"):
            db.execute(f"ALTER TABLE run DROP COLUMN {column}")
        db.execute("DROP TABLE blockgrid")
        db.execute("DROP TABLE validation")
        db.execute("UPDATE schema_version SET version = 1")
        db.execute(
            "INSERT INTO block (run_seq, block_id, status, worker, t) VALUES (?, 'x:3', 'done', "
            "'0', 1.0)",
            (run.seq,),
        )
    store = Store(path)
    assert store.version() == SCHEMA_VERSION == 3
    with store.session() as session:
        row = session.get(RunRow, run.seq)
        assert row is not None
        (task,) = block_map(store, session, row, None).tasks
        assert (task.task, task.total, task.blocks[0].index, task.blocks[0].status) == (
            "x",
            1,
            3,
            "done",
        )
    store.close()


@pytest.fixture
def sleeper(daemon: Daemon) -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand for a run's process (reaped with the daemon's home)."""
    process = subprocess.Popen(
        ["sleep", "120"], env={**os.environ, "LSDCTL_HOME": str(daemon.home)}
    )
    yield process
    process.kill()
    process.wait()


def test_blocks_and_checkpoints_over_the_api_update_live(
    daemon: Daemon, sleeper: subprocess.Popen[bytes]
) -> None:
    run_dir = daemon.projects / "p" / "runs" / "predict-20260101-000000-beef"
    run_dir.mkdir(parents=True)
    events = run_dir / "events.jsonl"
    _write(events, _grid("predict-a", [1, 1, 2]), _grid("predict-b", [2, 1, 1]))
    (run_dir / "checkpoints").mkdir()
    for name in ("checkpoint_00000004.pt", "checkpoint_00000002.pt", ".checkpoint_x.pt.tmp-1"):
        (run_dir / "checkpoints" / name).write_bytes(b"x" * 10)
    # The daemon re-attaches to a running run whose process is alive, and tails it.
    store = Store(daemon.home / "lsdctl.db")
    _run(store, run_dir, pid=sleeper.pid, pid_start=launcher.start_time(sleeper.pid))
    store.close()

    def blocks_of(task: str) -> dict[str, int]:
        with daemon.client() as client:
            found = {t.task: t for t in client.blocks(run_dir.name).tasks}
        return found[task].counts if task in found else {}

    with daemon.client() as client:
        deadline = time.monotonic() + 20
        while len(client.blocks(run_dir.name).tasks) < 2:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        tasks = client.blocks(run_dir.name).tasks
        assert [(t.task, t.shape, t.total, t.blocks) for t in tasks] == [
            ("predict-a", [1, 1, 2], 2, []),
            ("predict-b", [2, 1, 1], 2, []),
        ]
        _write(
            events,
            _block("predict-b", 1, [1, 0, 0], "running"),
            _block("predict-b", 1, [1, 0, 0], "failed", error="Traceback\nValueError: bad"),
        )
        while blocks_of("predict-b").get("failed") != 1:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        (task,) = client.blocks(run_dir.name, task="predict-b").tasks
        assert task.counts == {"pending": 1, "running": 0, "done": 0, "skipped": 0, "failed": 1}
        assert task.blocks[0].error == "Traceback\nValueError: bad"
        assert task.blocks[0].grid == [1, 0, 0]

        listed = client.checkpoints(run_dir.name).checkpoints
        assert [(c.iteration, Path(c.path).name, c.size_bytes) for c in listed] == [
            (2, "checkpoint_00000002.pt", 10),
            (4, "checkpoint_00000004.pt", 10),
        ]
        with pytest.raises(RunNotFound):
            client.blocks("predict-nope")
        with pytest.raises(RunNotFound):
            client.checkpoints("predict-nope")
