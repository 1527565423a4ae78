"""`lsdctl train --local`: a real foreground run in a child process, followed to the end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.contract import read_events
from engine.runs.checkpoints import list_checkpoints
from tests.conftest import CliCaller

ROOT = Path(__file__).resolve().parents[2]


def _project(cli: CliCaller) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    cli.ok("config", "set", "p", "system.num_workers", "1")
    cli.ok("config", "set", "p", "train.checkpoint_every", "2")
    cli.ok("data", "synth", "--project", "p", "--shape", "48,48,48")
    cli.ok("data", "synth", "--project", "p", "--split", "val", "--shape", "24,48,48")


def test_train_local_runs_and_resumes_to_a_new_total(cli: CliCaller, projects: Path) -> None:
    _project(cli)
    first = cli.ok("train", "--project", "p", "--local", "--iterations", "3")
    assert "done: run train-" in first.stdout and "3 iterations" in first.stdout
    (run_dir,) = (projects / "p" / "runs").iterdir()
    assert [i for i, _ in list_checkpoints(run_dir / "checkpoints")] == [2, 3]
    # The preset validates every 100 iterations, and at the end: once here.
    events, _ = read_events(run_dir / "events.jsonl")
    (point,) = [e for e in events if e["type"] == "validation"]
    assert point["step"] == 3 and point["best"] and set(point["volumes"]) == {"synth2"}
    second = cli.ok(
        "train", "--project", "p", "--local", "--resume", run_dir.name, "--iterations", "5"
    )
    assert "5 iterations" in second.stdout
    assert list_checkpoints(run_dir / "checkpoints")[-1][0] == 5
    assert len(list((projects / "p" / "runs").iterdir())) == 1  # same run directory


def test_train_refusals(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    cli.bad("train", "--project", "p", "--local", match="no training volumes")
    cli.ok("data", "synth", "--project", "p", "--shape", "48,48,48")
    cli.bad("train", "--project", "p", "--local", match="has no validation volumes")
    cli.ok("data", "synth", "--project", "p", "--split", "val", "--shape", "24,48,48")
    shutil.rmtree(projects / "p" / "val" / "synth2.zarr" / "labels")
    cli.bad("train", "--project", "p", "--local", match="val/synth2 has no labels")
    cli.bad("train", "--project", "p", "--local", "--model", "UNET", match="train.model_type")
    cli.bad("train", "--project", "p", "--local", "--iterations", "0", match="positive")
    cli.bad("train", "--project", "p", "--local", "--resume", "nope", match="no run 'nope'")
    cli.bad("train", "--project", "p", "--local", "--dataset", "nope", match="unknown preset")
    assert not any((projects / "p" / "runs").iterdir())  # nothing half-created


def _foreground(projects: Path, *args: str) -> subprocess.Popen[str]:
    """`lsdctl ARGS` as a shell script's background job would run it: SIGINT ignored."""
    return subprocess.Popen(
        [sys.executable, "-c", "from lsdctl.cli.main import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, "LSDCTL_PROJECTS": str(projects)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def _training(run_dir: Path) -> bool:
    events, _ = read_events(run_dir / "events.jsonl")
    return any(e.get("name") == "loss" for e in events)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] not in ("Z", "X")
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_foreground_run_never_outlives_lsdctl(cli: CliCaller, projects: Path) -> None:
    _project(cli)
    cli.ok("config", "set", "p", "train.checkpoint_every", "1000")
    # SIGINT to a background job (ignored by default there): stops like Ctrl-C.
    first = _foreground(projects, "train", "--project", "p", "--local", "--iterations", "500")
    _wait(lambda: any((projects / "p" / "runs").glob("*/events.jsonl")), "the run")
    (run_dir,) = (projects / "p" / "runs").iterdir()
    _wait(lambda: _training(run_dir), "training")
    (child,) = _children(first.pid)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    assert "interrupted" in err and not _alive(child)
    stopped = list_checkpoints(run_dir / "checkpoints")[-1][0]
    assert 0 < stopped < 500  # saved on the way out

    # lsdctl killed without a chance to act: the run still stops, with a checkpoint.
    second = _foreground(
        projects, "train", "--project", "p", "--local", "--resume", run_dir.name,
        "--iterations", "1000",
    )  # fmt: skip
    _wait(lambda: len(_children(second.pid)) == 1, "the training process")
    (child,) = _children(second.pid)
    _wait(lambda: _steps(run_dir) > stopped, "training to go on")
    second.kill()
    second.communicate()
    _wait(lambda: not _alive(child), "the orphaned run to stop", timeout=60)
    assert list_checkpoints(run_dir / "checkpoints")[-1][0] > stopped


def _steps(run_dir: Path) -> int:
    events, _ = read_events(run_dir / "events.jsonl")
    return max((e.get("step") or 0 for e in events if e.get("name") == "loss"), default=0)
