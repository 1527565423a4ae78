"""Validation points of training runs: `validation` events tailed into their table (a
step validated again replaces its row, the best point recomputed), served by
GET /v1/runs/{id}/validation, in run lists and details, the best checkpoint marked, and
a schema-2 database migrated in place."""

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
from daemon.tables import SCHEMA_VERSION, RunRow
from daemon.tailer import Tailer
from daemon.views import run_infos, validation
from lsdctl.client import RunNotFound
from tests.daemon.conftest import Daemon


def _write(path: Path, *events: dict[str, Any]) -> None:
    with path.open("a") as f:
        for event in events:
            f.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")


def _point(step: int, voi: float | None, threshold: float = 0.5, **extra: Any) -> dict[str, Any]:
    split = None if voi is None else round(voi * 0.6, 6)
    merge = None if voi is None else round(voi * 0.4, 6)
    return {
        "type": "validation",
        "step": step,
        "voi_split": split,
        "voi_merge": merge,
        "voi": voi,
        "arand": 0.1,
        "threshold": threshold,
        "best": False,  # the daemon decides which point is best; this flag must not matter
        "seconds": 2.5,
        "volumes": {
            "val_a": {"voi_split": split, "voi_merge": merge, "voi": voi, "voxels": 1000},
        },
        **extra,
    }


def _run(store: Store, run_dir: Path, state: str = "running", **fields: Any) -> RunRow:
    with store.session() as session:
        project = store.project(session, str(run_dir.parent.parent), "p")
        assert project.id is not None
        run = RunRow(
            id=run_dir.name,
            project_id=project.id,
            kind="train",
            state=state,
            run_dir=str(run_dir),
            created=time.time(),
            attempts=1,
            **fields,
        )
        session.add(run)
        session.commit()
        return run


class _Tailing:
    """A store with one train run, and its events.jsonl tailed on demand."""

    def __init__(self, root: Path) -> None:
        self.store = Store(root / "lsdctl.db")
        self.dir = root / "p" / "runs" / "train-20260101-000000-aaaa"
        self.dir.mkdir(parents=True)
        self.seq = _run(self.store, self.dir).seq
        self.tailer = Tailer(self.store)

    def feed(self, *events: dict[str, Any], attempt: int | None = None) -> RunRow:
        _write(self.dir / "events.jsonl", *events)
        with self.store.session() as session:
            run = session.get(RunRow, self.seq)
            assert run is not None
            if attempt is not None:
                run.attempts = attempt
            self.tailer.tail(session, run, until_end=True)
            session.commit()
            return run

    def points(self) -> list[tuple[int, int, float | None, bool]]:
        with self.store.session() as session:
            run = session.get(RunRow, self.seq)
            assert run is not None
            listed = validation(self.store, session, run).points
        return [(p.step, p.attempt, p.voi, p.best) for p in listed]


@pytest.fixture
def tailing(tmp_path: Path) -> Iterator[_Tailing]:
    state = _Tailing(tmp_path)
    yield state
    state.store.close()


def test_validation_events_are_stored_in_step_order_with_the_lowest_voi_best(
    tailing: _Tailing,
) -> None:
    run = tailing.feed(
        _point(1000, 0.70),
        {"type": "metric", "step": 1000, "name": "loss", "value": 0.2},
        _point(500, 0.90, threshold=0.4),
        _point(1500, 0.55, threshold=0.6),
        _point(2000, 0.55, threshold=0.7),  # a tie: the earlier step stays best
        _point(2500, None),  # NaN scores (an empty segmentation) are never best
        {"type": "validation", "voi": 0.1},  # no step: skipped, the rest still read
    )
    assert (run.best_step, run.best_voi, run.best_threshold) == (1500, 0.55, 0.6)
    assert tailing.points() == [
        (500, 1, 0.90, False),
        (1000, 1, 0.70, False),
        (1500, 1, 0.55, True),
        (2000, 1, 0.55, False),
        (2500, 1, None, False),
    ]
    with tailing.store.session() as session:
        row = session.get(RunRow, tailing.seq)
        assert row is not None
        first = validation(tailing.store, session, row).points[2]
        (info,) = run_infos(tailing.store, session, [row])
    assert (first.voi_split, first.voi_merge, first.arand, first.seconds) == (0.33, 0.22, 0.1, 2.5)
    assert first.volumes["val_a"].voxels == 1000 and first.volumes["val_a"].voi == 0.55
    assert info.best_validation == first


def test_a_resumed_run_that_validates_a_step_again_replaces_it_and_the_best_moves(
    tailing: _Tailing,
) -> None:
    tailing.feed(_point(500, 0.8), _point(1000, 0.6), _point(1500, 0.5))
    # Attempt 2 resumes from the checkpoint at 1000: step 1500 comes again, worse now.
    run = tailing.feed(_point(1500, 0.75, threshold=0.3), attempt=2)
    assert (run.best_step, run.best_voi, run.best_threshold) == (1000, 0.6, 0.5)
    assert tailing.points() == [
        (500, 1, 0.8, False),
        (1000, 1, 0.6, True),
        (1500, 2, 0.75, False),
    ]
    # Within one batch, the later of two events of a step wins too.
    run = tailing.feed(_point(2000, 0.9), _point(2000, 0.4, volumes={}), attempt=2)
    assert (run.best_step, run.best_voi) == (2000, 0.4)
    assert tailing.points()[-1] == (2000, 2, 0.4, True)
    # NaN in the file (Python's json writes it) reads as a missing score.
    with (tailing.dir / "events.jsonl").open("a") as f:
        f.write('{"type": "validation", "step": 2000, "voi": NaN, "voi_split": Infinity}\n')
    run = tailing.feed()
    assert (run.best_step, run.best_voi) == (1000, 0.6)
    assert tailing.points()[-1] == (2000, 2, None, False)


def test_a_schema_2_database_gains_the_validation_table_and_keeps_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lsdctl.db"
    store = Store(path)
    run_dir = tmp_path / "p" / "runs" / "train-20260101-000000-bbbb"
    run_dir.mkdir(parents=True)
    run = _run(store, run_dir, latest_loss=0.25, latest_step=40)
    store.close()
    # Take the database back to what schema 2 had.
    with sqlite3.connect(path) as db:
        for column in ("best_step", "best_voi", "best_threshold"):
            db.execute(f"ALTER TABLE run DROP COLUMN {column}")
        db.execute("DROP TABLE validation")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version VALUES (2, 0)")
    store = Store(path)
    assert store.version() == SCHEMA_VERSION == 3
    _write(run_dir / "events.jsonl", _point(40, 0.5))
    with store.session() as session:
        row = session.get(RunRow, run.seq)
        assert row is not None
        assert (row.latest_loss, row.latest_step, row.best_step) == (0.25, 40, None)
        Tailer(store).tail(session, row, until_end=True)
        session.commit()
        (info,) = run_infos(store, session, [row])
    assert info.best_validation is not None
    assert (info.best_validation.step, info.best_validation.voi) == (40, 0.5)
    store.close()
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT version FROM schema_version")] == [2, 3]


@pytest.fixture
def sleeper(daemon: Daemon) -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand for a run's process (reaped with the daemon's home)."""
    process = subprocess.Popen(
        ["sleep", "120"], env={**os.environ, "LSDCTL_HOME": str(daemon.home)}
    )
    yield process
    process.kill()
    process.wait()


def test_validation_points_over_the_api_update_live(
    daemon: Daemon, sleeper: subprocess.Popen[bytes]
) -> None:
    run_dir = daemon.projects / "p" / "runs" / "train-20260101-000000-cafe"
    (run_dir / "checkpoints").mkdir(parents=True)
    events = run_dir / "events.jsonl"
    _write(events, _point(2, 0.9), _point(4, 0.6, threshold=0.45))
    store = Store(daemon.home / "lsdctl.db")
    _run(store, run_dir, pid=sleeper.pid, pid_start=launcher.start_time(sleeper.pid))
    # A train run without validation has no best point.
    other = _run(store, daemon.projects / "p" / "runs" / "train-20260101-000000-0000", "failed")
    store.close()
    for iteration in (4, 6):
        name = f"checkpoint_{iteration:08d}.pt"
        (run_dir / "checkpoints" / name).write_bytes(b"x")
    (run_dir / "checkpoints" / "best.json").write_text(
        json.dumps(
            {"iteration": 4, "path": str(run_dir / "checkpoints" / "checkpoint_00000004.pt")}
        )
    )

    with daemon.client() as client:
        deadline = time.monotonic() + 20
        while len(client.validation(run_dir.name).points) < 2:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        listed = client.validation(run_dir.name)
        assert listed.run == run_dir.name
        assert [(p.step, p.voi, p.threshold, p.best) for p in listed.points] == [
            (2, 0.9, 0.5, False),
            (4, 0.6, 0.45, True),
        ]
        assert listed.points[1].volumes["val_a"].voi_split == 0.36

        # A new best arrives, then the same step again from the same attempt: the later
        # event wins, and the best goes back to step 4.
        _write(events, _point(6, 0.4, threshold=0.55))
        while client.run(run_dir.name).best_validation.step != 6:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        _write(events, _point(6, 0.65, threshold=0.55))
        while client.validation(run_dir.name).points[-1].voi != 0.65:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        detail = client.run(run_dir.name)
        assert [(p.step, p.voi, p.best) for p in detail.validation] == [
            (2, 0.9, False),
            (4, 0.6, True),
            (6, 0.65, False),
        ]
        assert detail.best_validation == detail.validation[1]
        runs = {r.id: r for r in client.runs()}
        assert runs[run_dir.name].best_validation == detail.validation[1]
        assert runs[other.id].best_validation is None
        assert client.validation(other.id).points == []

        marks = [(c.iteration, c.best) for c in client.checkpoints(run_dir.name).checkpoints]
        assert marks == [(4, True), (6, False)]
        with pytest.raises(RunNotFound):
            client.validation("train-nope")
