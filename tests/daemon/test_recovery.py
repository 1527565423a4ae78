"""Crashes: the daemon killed with -9 mid-run, a run's process killed with -9, and both."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from daemon.launcher import is_alive
from daemon.schemas import RunState
from tests.conftest import CliCaller
from tests.daemon.conftest import Daemon, DaemonMaker, submit

pytestmark = pytest.mark.slow


def _checkpoint_iteration(path: str | None) -> int:
    assert path is not None
    return int(Path(path).stem.rsplit("_", 1)[1])


def test_killing_the_daemon_loses_neither_the_run_nor_a_metric(
    make_daemon: DaemonMaker,
) -> None:
    daemon = make_daemon()
    run_id = submit(daemon, overrides={"train.iterations": 10, "train.checkpoint_every": 4})
    run = daemon.wait(run_id, lambda r: (r.latest_step or 0) >= 2)
    assert run.pid is not None
    daemon.kill9()
    # The run lives in its own session: it goes on, unobserved, while no daemon runs.
    assert is_alive(run.pid, None)
    events = Path(run.run_dir) / "events.jsonl"
    written = events.stat().st_size
    deadline = time.monotonic() + 30
    while events.stat().st_size == written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events.stat().st_size > written
    daemon.start()
    assert "re-attached to pid" in daemon.log()
    done = daemon.wait_state(run_id, RunState.SUCCEEDED, timeout=120)
    assert done.attempts == 1 and done.latest_step == 10
    with daemon.client() as client:
        steps = [p.step for p in client.metrics(run_id, "loss").points]
    assert steps == list(range(1, 11))  # every step once: no gap, no duplicate


def test_killed_runs_are_interrupted_and_resume_from_their_checkpoint(
    make_daemon: DaemonMaker, cli: CliCaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon: Daemon = make_daemon()
    monkeypatch.setenv("LSDCTL_HOME", str(daemon.home))
    overrides = {"train.iterations": 200, "train.checkpoint_every": 2}
    run_id = submit(daemon, overrides=overrides)

    # 1. The training process killed while the daemon watches: interrupted.
    run = daemon.wait(run_id, lambda r: r.last_checkpoint is not None)
    assert run.pid is not None
    os.kill(run.pid, signal.SIGKILL)
    run = daemon.wait_state(run_id, RunState.INTERRUPTED)
    assert run.exit_code == -9 and run.reason is not None
    assert run.reason.startswith("killed by SIGKILL")
    first = _checkpoint_iteration(run.last_checkpoint)
    assert f"lsdctl resume {run_id}" in cli.ok("runs").stdout

    # 2. Resumed, then killed while no daemon runs: the next daemon marks it interrupted.
    cli.ok("resume", run_id, "-d")
    run = daemon.wait(
        run_id,
        lambda r: r.attempts == 2 and _checkpoint_iteration(r.last_checkpoint) > first,
    )
    assert run.pid is not None
    daemon.kill9()
    os.kill(run.pid, signal.SIGKILL)
    daemon.start()
    run = daemon.wait_state(run_id, RunState.INTERRUPTED)
    assert run.exit_code is None and "while the daemon was away" in (run.reason or "")
    second = _checkpoint_iteration(run.last_checkpoint)

    # 3. Resumed to a nearby end, followed by the CLI to the end.
    result = cli.ok("resume", run_id, "--iterations", str(second + 2))
    assert f"done: run {run_id}, {second + 2} iterations" in result.stdout
    run = daemon.wait_state(run_id, RunState.SUCCEEDED)
    assert run.attempts == 3 and [h.exit_code for h in run.history] == [-9, None, 0]
    with open(Path(run.run_dir) / "events.jsonl") as f:
        resumed = [e["iteration"] for e in map(json.loads, f) if e["type"] == "resumed"]
    assert resumed == [first, second]
