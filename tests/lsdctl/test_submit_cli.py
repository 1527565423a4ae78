"""`lsdctl predict|segment|evaluate` (cli/_submit.py): refusals that leave nothing behind,
and what goes to the daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from daemon.schemas import RunCreate
from engine.runs.spec import RunSpec, read_spec
from lsdctl.client import ensure_daemon
from tests.checkpoint_files import write_checkpoint
from tests.conftest import CliCaller, tree
from tests.engine.evaluate.test_evaluate import make_segment_run

SEGMENT_RUN = "segment-20260101-000000-aaaa"


@pytest.fixture
def no_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A daemon home of its own: a refusal must come before any daemon is started."""
    home = tmp_path / "home"
    monkeypatch.setenv("LSDCTL_HOME", str(home))
    return home


def test_refusals_are_one_line_and_change_nothing(
    cli: CliCaller, projects: Path, no_daemon: Path
) -> None:
    cli.ok("init", "p")
    before = tree(projects)
    for local in ([], ["--local"]):
        cli.bad(
            "predict", "--project", "p", *local,
            match="no checkpoint in project p: train first (lsdctl train --project p)",
        )  # fmt: skip
        cli.bad(
            "segment", "--project", "p", *local,
            match="no succeeded predict run in project p: run `lsdctl predict --project p` first",
        )  # fmt: skip
        cli.bad(
            "evaluate", "--project", "p", *local,
            match="no succeeded segment run in project p",
        )  # fmt: skip
    cli.bad("predict", "--project", "p", "--executor", "pbs", match="--executor must be one of")
    cli.bad("predict", "--project", "nope", match="no project 'nope'")
    cli.bad("predict", "--project", "p", "--checkpoint", "t:5", match="no run 't' in project p")
    cli.bad("predict", "--project", "p", "--workers", "0", match="--workers")
    cli.bad("segment", "--project", "p", "--thresholds", "0.1:0.9", match="START:STOP:STEP")
    cli.bad("segment", "--project", "p", "--merge-function", "median", match="merge_function")
    cli.bad("segment", "--project", "p", "--from", "predict-1", match="no run 'predict-1'")
    cli.bad("evaluate", "--project", "p", "--from", "x", "--local", match="no run 'x'")
    assert tree(projects) == before
    assert not no_daemon.exists()


def test_through_the_daemon(cli: CliCaller, projects: Path, home: Path) -> None:
    cli.ok("init", "p")
    make_segment_run(projects / "p")
    printed = json.loads(cli.ok("evaluate", "--project", "p", "--json").stdout)
    assert printed["threshold"] == 0.1 and printed["voi_merge"] == 0.0
    evaluated = read_spec(Path(printed["metrics"]).parent)
    assert evaluated.inputs == {"segment_run": str(projects / "p" / "runs" / SEGMENT_RUN)}

    # What the daemon writes into run.toml at launch: the inputs resolved here, and the
    # executor from the override. Only run.toml is checked, not how the run goes.
    checkpoints = projects / "p" / "runs" / "train-1" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # A real checkpoint: train-1 has no run.toml, so the resolver checks the file.
    write_checkpoint(checkpoints / "checkpoint_00000010.pt", projects / "p")
    volume = projects / "p" / "test" / "vol.zarr"
    run_id = cli.ok(
        "predict", "--project", "p", "--checkpoint", str(checkpoints / "checkpoint_00000010.pt"),
        "--workers", "3", "--executor", "slurm", "--overwrite", "-d",
    ).stdout.strip()  # fmt: skip
    run_toml = projects / "p" / "runs" / run_id / "run.toml"
    deadline = time.monotonic() + 20
    while not run_toml.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    spec = read_spec(run_toml.parent)
    # train-1 has no run.toml, so the file is from outside any run: no train_run.
    assert spec.inputs == {
        "checkpoint": str(checkpoints / "checkpoint_00000010.pt"),
        "volumes": [str(volume)],
        "overwrite": True,
    }
    assert (spec.resources.workers, spec.resources.executor, spec.resources.gpus) == (
        3,
        "slurm",
        [],
    )
    assert spec.config.predict.executor == "slurm"

    # -d --json: the queued run as {"run", "kind", "state"}, at once.
    checkpoint = str(checkpoints / "checkpoint_00000010.pt")
    queued = json.loads(
        cli.ok(
            "predict", "--project", "p", "--checkpoint", checkpoint,
            "--executor", "slurm", "--overwrite", "-d", "--json",
        ).stdout
    )  # fmt: skip
    assert set(queued) == {"run", "kind", "state"} and queued["kind"] == "predict"
    assert queued["run"].startswith("predict-") and queued["run"] != run_id

    # Straight to the daemon (the TUI's way): the workers asked for, or else the
    # project's predict.num_workers, both decided by the resolver alone.
    with ensure_daemon() as client:
        for asked in (None, 1):
            run = client.submit(
                RunCreate(
                    kind="predict",
                    project=str(projects / "p"),
                    overrides={"predict.executor": "slurm"},
                    inputs={"checkpoint": checkpoint, "overwrite": True},
                    workers=asked,
                )
            )
            spec = _launched(Path(run.run_dir))
            assert spec.resources.workers == (asked or spec.config.predict.num_workers)
            assert spec.config.predict.num_workers != 1  # so the two cases differ


def _launched(run_dir: Path) -> RunSpec:
    """The run.toml the daemon writes at launch."""
    deadline = time.monotonic() + 20
    while not (run_dir / "run.toml").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return read_spec(run_dir)


def test_bad_regions_are_refused_before_anything_is_written(
    cli: CliCaller, projects: Path, no_daemon: Path
) -> None:
    """--roi errors (syntax, axes, empty, off the voxel grid, outside the volume) exit 2
    with one line, before a run directory or a daemon exists."""
    cli.ok("init", "p")
    make_segment_run(projects / "p")  # segmentations of 8x16x16 voxels of 8 nm at z 32 nm
    before = tree(projects)
    for local in ([], ["--local"]):
        cli.bad("evaluate", "--project", "p", "--roi", "0:8;0:8", *local, match="is not z0:z1")
        cli.bad("evaluate", "--project", "p", "--roi", "0:8,0:8", *local, match="has 2 axes")
        cli.bad("evaluate", "--project", "p", "--roi", "4:4,0:8,0:8vx", *local, match="empty")
        cli.bad(
            "evaluate", "--project", "p", "--roi", "36:64,0:64,0:64", *local,
            match="not on the voxel grid",
        )  # fmt: skip
        cli.bad(
            "evaluate", "--project", "p", "--roi", "0:9,0:16,0:16vx", *local,
            match="reaches outside",
        )  # fmt: skip
        cli.bad("segment", "--project", "p", "--roi", "x", *local, match="is not z0:z1")
        cli.bad("predict", "--project", "p", "--roi", "1:0,0:1,0:1", *local, match="empty")
    assert tree(projects) == before
    assert not no_daemon.exists()
