"""`lsdctl runs` and `lsdctl run show` with validation results: the best-validation
column, the table of validation points with the best one marked, and both in --json."""

from __future__ import annotations

import json
import time

import pytest

from daemon.store import Store
from daemon.tables import RunRow
from daemon.tailer import Tailer
from engine.contract import EventWriter
from tests.conftest import CliCaller
from tests.daemon.conftest import (  # noqa: F401  (fixtures)
    Daemon,
    DaemonMaker,
    make_daemon,
    template_project,
)

VALIDATED = "train-20260101-100000-aaaa"
PLAIN = "train-20260101-110000-bbbb"


def _validation(step: int, voi: float, threshold: float, seconds: float) -> dict[str, object]:
    return {
        "t": 1_767_261_600.0 + step,
        "type": "validation",
        "step": step,
        "voi_split": round(voi * 0.6, 4),
        "voi_merge": round(voi * 0.4, 4),
        "voi": voi,
        "arand": 0.08,
        "threshold": threshold,
        "best": False,
        "seconds": seconds,
        "volumes": {"val": {"voi": voi, "voxels": 4096}},
    }


def _seed(daemon: Daemon) -> None:
    """Two finished train runs, one validated three times; events read by the daemon's
    own tailer, as they would be while the runs ran."""
    store = Store(daemon.home / "lsdctl.db")
    tailer = Tailer(store)
    with store.session() as session:
        project = store.project(session, str(daemon.projects / "p"), "p")
        assert project.id is not None
        for run_id, created in ((VALIDATED, 100.0), (PLAIN, 200.0)):
            run_dir = daemon.projects / "p" / "runs" / run_id
            run_dir.mkdir(parents=True)
            run = RunRow(
                id=run_id,
                project_id=project.id,
                kind="train",
                state="succeeded",
                reason="done",
                run_dir=str(run_dir),
                created=time.time() - 1000 + created,
                attempts=1,
            )
            session.add(run)
            session.flush()
            if run_id == VALIDATED:
                with (run_dir / "events.jsonl").open("w") as f:
                    for event in (
                        _validation(500, 0.812, 0.4, 3.25),
                        _validation(1000, 0.531, 0.6, 2.5),
                        _validation(1500, 0.602, 0.55, 2.75),
                    ):
                        f.write(json.dumps(event) + "\n")
            else:
                # The engine's own writer, as engine.train.trainer reports every 10 iterations.
                events = EventWriter(run_dir / "events.jsonl")
                for step, loss, wait in ((10, 0.25, 0.125), (20, 0.2, 0.375)):
                    events.metric(step, "loss", loss)
                    events.metric(step, "data_wait", wait)
                events.close()
            tailer.tail(session, run, until_end=True)
        session.commit()
    store.close()


@pytest.fixture
def seeded(
    make_daemon: DaemonMaker,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Daemon:
    daemon = make_daemon(start=False)
    _seed(daemon)
    daemon.start()
    monkeypatch.setenv("LSDCTL_HOME", str(daemon.home))
    monkeypatch.setenv("LSDCTL_PROJECTS", str(daemon.projects))
    return daemon


def _row(text: str, first: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.split()[:1] == [first]]
    return line.split()


def test_runs_show_the_best_validation_and_run_show_every_point(
    seeded: Daemon, cli: CliCaller
) -> None:
    listed = cli.ok("runs").stdout
    header = listed.splitlines()[0]
    assert header.split() == "ID PROJECT STATE PROGRESS LOSS BEST VAL ETA CREATED NOTE".split()
    column = header.index("BEST VAL")
    validated, plain = (
        next(line for line in listed.splitlines() if line.startswith(run_id))
        for run_id in (VALIDATED, PLAIN)
    )
    assert validated[column:].startswith("0.531 @1000 ")
    assert plain[column : column + len("BEST VAL")].strip() == ""  # blank, not "-"

    as_json = {r["id"]: r for r in json.loads(cli.ok("runs", "--json").stdout)}
    best = as_json[VALIDATED]["best_validation"]
    assert (best["step"], best["voi"], best["threshold"], best["best"]) == (1000, 0.531, 0.6, True)
    assert best["volumes"] == {
        "val": {"voi_split": None, "voi_merge": None, "voi": 0.531, "arand": None, "voxels": 4096}
    }
    assert as_json[PLAIN]["best_validation"] is None

    shown = cli.ok("run", "show", VALIDATED).stdout
    assert "best val  VOI 0.531 at step 1000, threshold 0.60 (split 0.319, merge 0.212" in shown
    table = shown[shown.index("validation") :]
    assert " ".join(_row(table, "STEP")) == "STEP VOI SPLIT VOI MERGE VOI ARAND THRESHOLD SECONDS"
    assert _row(table, "500") == ["500", "0.487", "0.325", "0.812", "0.080", "0.40", "3.2"]
    assert _row(table, "*") == ["*", "1000", "0.319", "0.212", "0.531", "0.080", "0.60", "2.5"]
    assert _row(table, "1500") == ["1500", "0.361", "0.241", "0.602", "0.080", "0.55", "2.8"]
    assert table.index("500") < table.index("1000") < table.index("1500")

    detail = json.loads(cli.ok("run", "show", VALIDATED, "--json").stdout)
    assert [(p["step"], p["best"]) for p in detail["validation"]] == [
        (500, False),
        (1000, True),
        (1500, False),
    ]
    assert detail["best_validation"] == detail["validation"][1]

    plain_shown = cli.ok("run", "show", PLAIN).stdout
    assert "best val" not in plain_shown and "validation" not in plain_shown
    assert json.loads(cli.ok("run", "show", PLAIN, "--json").stdout)["validation"] == []


def test_run_show_has_the_share_of_time_spent_waiting_for_batches(
    seeded: Daemon, cli: CliCaller
) -> None:
    shown = cli.ok("run", "show", PLAIN).stdout
    (line,) = [line for line in shown.splitlines() if line.split()[:1] == ["data_wait"]]
    assert "38% of the time waiting for batches (step 20)" in line  # the latest, 0.375
    assert "raise system.num_workers" in line  # a starved GPU says what to do
    assert "loss  0.2000 at step 20" in shown
    detail = json.loads(cli.ok("run", "show", PLAIN, "--json").stdout)
    assert {(m["name"], m["step"], m["value"]) for m in detail["latest_metrics"]} >= {
        ("data_wait", 20, 0.375)
    }
    assert "data_wait" not in cli.ok("run", "show", VALIDATED).stdout
