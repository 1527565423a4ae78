"""engine.train.trainer: the run-directory contract, loss falling, checkpoints, resume, SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from engine.contract import read_events
from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.models.registry import MODEL_TYPES
from engine.project import config as cfg
from engine.runs.checkpoints import list_checkpoints, load_checkpoint
from engine.train.trainer import main as train_main
from tests.engine.train.train_runs import make_run_dir, read_losses

ROOT = Path(__file__).parents[3]


def _project(
    tmp_path: Path, preset: str = "tiny", shape: tuple[int, ...] = (64, 64, 64), **overrides: object
) -> tuple[Path, cfg.ProjectConfig]:
    # No validation unless a test asks for it: these volumes have no val/ split.
    train = {"validate_every": 0, **overrides.pop("train", {})}  # type: ignore[dict-item]
    config = cfg.from_preset(
        preset, {"system": {"num_workers": 1, "cache_size": 2}, "train": train, **overrides}
    )
    project = tmp_path / "proj"
    raw, labels = synthesize(shape, config.data.voxel_size, seed=3)
    write_volume(project / "train" / "v.zarr", raw, labels, config.data.voxel_size)
    return project, config


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_every_model_type_trains_and_checkpoints(tmp_path: Path, model_type: str) -> None:
    overrides: dict[str, object] = {
        "train": {
            "model_type": model_type,
            "iterations": 4,
            "checkpoint_every": 2,
            "lsd_iterations": 2,
            "snapshot_every": 4,
            "tensorboard": True,
        }
    }
    if MODEL_TYPES[model_type].auto_context:
        overrides["model"] = {"input_shape": [76, 76, 76]}  # two chained UNets need more context
    project, config = _project(tmp_path, shape=(80, 80, 80), **overrides)  # type: ignore[arg-type]
    run_dir = make_run_dir(project, config)
    assert train_main([str(run_dir)]) == 0
    assert [i for i, _ in list_checkpoints(run_dir / "checkpoints")] == [2, 4]
    state = load_checkpoint(run_dir / "checkpoints" / "checkpoint_00000004.pt")
    assert state["iteration"] == 4 and state["model_type"] == model_type
    assert len(read_losses(run_dir)) == 4 and all(np.isfinite(read_losses(run_dir)))
    events, _ = read_events(run_dir / "events.jsonl")
    assert events[-1]["type"] == "result" and events[-1]["iterations"] == 4
    snapshot = zarr.open_group(str(run_dir / "snapshots" / "iteration_00000004.zarr"), mode="r")
    assert "raw" in snapshot and any(name.startswith("pred_") for name in snapshot)
    # Iteration 4 is past an auto-context model's stage one: every declared output shows.
    predicted = {name for name in snapshot if name.startswith("pred_")}
    assert predicted == set(MODEL_TYPES[model_type].predicts)
    if importlib.util.find_spec("tensorboard"):
        assert any((run_dir / "tensorboard").iterdir())
    else:  # the optional extra is missing: said once, training goes on
        warnings = [e["message"] for e in events if e["type"] == "warning"]
        assert len(warnings) == 1 and "tensorboard is not installed" in warnings[0]


def test_resume_continues_with_the_same_optimizer_state(tmp_path: Path) -> None:
    project, config = _project(tmp_path, train={"iterations": 6, "checkpoint_every": 3})
    run_dir = make_run_dir(project, config)
    assert train_main([str(run_dir), "--iterations", "3"]) == 0
    first = load_checkpoint(run_dir / "checkpoints" / "checkpoint_00000003.pt")
    assert train_main([str(run_dir)]) == 0  # up to train.iterations = 6
    events, _ = read_events(run_dir / "events.jsonl")
    assert any(e["type"] == "resumed" and e["iteration"] == 3 for e in events)
    last = load_checkpoint(run_dir / "checkpoints" / "checkpoint_00000006.pt")
    steps = [s["step"] for s in last["optimizer"]["state"].values()]
    assert steps and all(float(s) == 6 for s in steps)  # Adam carried on from step 3
    assert [e["step"] for e in events if e["type"] == "metric" and e["name"] == "loss"] == list(
        range(1, 7)
    )
    first_steps = [float(s["step"]) for s in first["optimizer"]["state"].values()]
    assert all(s == 3 for s in first_steps)


def _start(run_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.train", str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(run_dir / "log.txt").open("wb"),
        start_new_session=True,
    )


def _wait_for(run_dir: Path, predicate, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events, _ = read_events(run_dir / "events.jsonl")
        if predicate(events):
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out; log: {(run_dir / 'log.txt').read_text()[-2000:]}")


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_3_then_kill_9_resumes(tmp_path: Path) -> None:
    project, config = _project(tmp_path, train={"iterations": 100000, "checkpoint_every": 5})
    run_dir = make_run_dir(project, config)
    child = _start(run_dir)
    _wait_for(
        run_dir, lambda ev: sum(e["type"] == "metric" and e["name"] == "loss" for e in ev) >= 3
    )
    # To the whole process group, as a cancel does: batch workers get it too.
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(timeout=120) == 3
    events, _ = read_events(run_dir / "events.jsonl")
    done = max(e["step"] for e in events if e["type"] == "metric" and e["name"] == "loss")
    assert events[-2]["type"] == "checkpoint" and events[-2]["iteration"] == done
    assert list_checkpoints(run_dir / "checkpoints")[-1][0] == done
    # kill -9 after a periodic checkpoint: the next start resumes exactly there.
    child = _start(run_dir)
    _wait_for(
        run_dir, lambda ev: any(e["type"] == "checkpoint" and e["iteration"] > done for e in ev)
    )
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    saved = list_checkpoints(run_dir / "checkpoints")[-1][0]
    assert train_main([str(run_dir), "--iterations", str(saved + 2)]) == 0
    events, _ = read_events(run_dir / "events.jsonl")
    assert [e["iteration"] for e in events if e["type"] == "resumed"][-1] == saved


def test_bad_run_dir_exits_2(tmp_path: Path) -> None:
    assert train_main([str(tmp_path / "missing")]) == 2
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.toml").write_text("kind = 'train'\n")
    assert train_main([str(tmp_path / "r")]) == 2
    events, _ = read_events(tmp_path / "r" / "events.jsonl")
    assert events[-1]["type"] == "error" and "run.toml" in events[-1]["message"]


def test_no_training_volumes_exits_2(tmp_path: Path) -> None:
    config = cfg.from_preset("tiny")
    (tmp_path / "proj" / "train").mkdir(parents=True)
    run_dir = make_run_dir(tmp_path / "proj", config)
    assert train_main([str(run_dir)]) == 2
    events, _ = read_events(run_dir / "events.jsonl")
    assert "no training volumes" in events[-1]["message"]
