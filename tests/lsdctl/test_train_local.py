"""`lsdctl train --local`: a real foreground run in a child process, followed to the end."""

from __future__ import annotations

from pathlib import Path

from engine.checkpoints import list_checkpoints
from tests.conftest import CliCaller


def _project(cli: CliCaller) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    cli.ok("config", "set", "p", "system.num_workers", "1")
    cli.ok("config", "set", "p", "train.checkpoint_every", "2")
    cli.ok("data", "synth", "--project", "p", "--shape", "48,48,48")


def test_train_local_runs_and_resumes_to_a_new_total(cli: CliCaller, projects: Path) -> None:
    _project(cli)
    first = cli.ok("train", "--project", "p", "--local", "--iterations", "3")
    assert "done: run train-" in first.stdout and "3 iterations" in first.stdout
    (run_dir,) = (projects / "p" / "runs").iterdir()
    assert [i for i, _ in list_checkpoints(run_dir / "checkpoints")] == [2, 3]
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
    cli.bad("train", "--project", "p", "--local", "--model", "UNET", match="train.model_type")
    cli.bad("train", "--project", "p", "--local", "--iterations", "0", match="positive")
    cli.bad("train", "--project", "p", "--local", "--resume", "nope", match="no run 'nope'")
    cli.bad("train", "--project", "p", "--local", "--dataset", "nope", match="unknown preset")
    assert not any((projects / "p" / "runs").iterdir())  # nothing half-created
