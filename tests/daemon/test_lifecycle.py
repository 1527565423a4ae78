"""A run's life through the CLI and a real daemon: submit, wait for another run, list,
logs, cancel, resume from the checkpoint, follow to the end, Ctrl-C to detach."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from daemon.schemas import RunState
from tests.conftest import CliCaller
from tests.daemon.conftest import ROOT, Daemon

pytestmark = pytest.mark.slow


def _events(run_dir: str, type_: str) -> list[dict[str, object]]:
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        return [e for e in map(json.loads, f) if e["type"] == type_]


def test_submit_after_cancel_resume_follow(use_daemon: Daemon, cli: CliCaller) -> None:
    daemon = use_daemon
    # Long enough that A still runs while B is followed and detached on a fast machine
    # (60 iterations were over before the follower's first line once); A is cancelled.
    a = cli.ok("train", "--project", "p", "--iterations", "600", "-d").stdout.strip()
    daemon.wait_state(a, RunState.RUNNING)
    # `lsdctl train` follows the run it submits; Ctrl-C detaches and the run stays queued.
    command = ["train", "--project", "p", "--iterations", "2", "--after", a]
    follower = subprocess.Popen(
        [sys.executable, "-c", "from lsdctl.cli.main import main; main()", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with daemon.client() as client:
        while len(runs := client.runs()) < 2:
            assert follower.poll() is None, follower.communicate()
            time.sleep(0.1)
    b = runs[0].id
    # Ctrl-C once it follows (its first line), however long a loaded machine takes.
    assert follower.stderr is not None
    ready, _, _ = select.select([follower.stderr], [], [], 60)
    assert ready, "the follower printed nothing in 60 s"
    first = follower.stderr.readline()
    assert first.startswith(f"run {b}: queued"), first
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, first + err
    assert f"detached; run {b} goes on in the daemon" in err
    assert f"`lsdctl logs {b} -f`" in err
    assert daemon.wait(b, lambda r: r.reason != "queued").reason == f"waiting for {a} (running)"

    # A stops at a checkpoint when cancelled; B keeps waiting for it.
    daemon.wait(a, lambda r: r.last_checkpoint is not None)
    assert cli.ok("cancel", a).stdout.startswith(f"cancelling run {a}")
    run_a = daemon.wait_state(a, RunState.CANCELLED, timeout=60)
    stopped = run_a.latest_step
    assert stopped is not None and stopped < 600
    assert run_a.last_checkpoint and run_a.last_checkpoint.endswith(f"{stopped:08d}.pt")
    assert daemon.wait(b, lambda r: "cancelled" in (r.reason or "")).state == RunState.QUEUED

    listed = json.loads(cli.ok("runs", "--json").stdout)
    assert [r["id"] for r in listed] == [b, a]  # newest first
    assert {"id", "project", "kind", "state", "created"} <= set(listed[0])
    assert [r["state"] for r in listed] == ["queued", "cancelled"]
    assert [
        r["id"] for r in json.loads(cli.ok("runs", "--state", "cancelled", "--json").stdout)
    ] == [a]
    assert "stopped by signal" in cli.ok("logs", a).stdout
    shown = cli.ok("run", "show", a).stdout
    assert "cancelled" in shown and "train.iterations=600" in shown

    # Resume: a new attempt that continues from the checkpoint; followed to the end.
    result = cli.ok("resume", a, "--iterations", str(stopped + 2))
    assert f"done: run {a}, {stopped + 2} iterations" in result.stdout
    run_a = daemon.wait_state(a, RunState.SUCCEEDED)
    assert run_a.attempts == 2 and [h.number for h in run_a.history] == [1, 2]
    assert [e["iteration"] for e in _events(run_a.run_dir, "resumed")] == [stopped]
    with daemon.client() as client:
        points = client.metrics(a, "loss").points
    assert [(p.attempt, p.step) for p in points] == [(1, s) for s in range(1, stopped + 1)] + [
        (2, stopped + 1),
        (2, stopped + 2),
    ]

    # B ran only after A succeeded.
    out = cli.ok("logs", b, "-f").stdout
    assert "done: 2 iterations" in out
    run_b = daemon.wait_state(b, RunState.SUCCEEDED)
    assert run_a.finished is not None and run_b.started is not None
    assert run_b.started >= run_a.finished
