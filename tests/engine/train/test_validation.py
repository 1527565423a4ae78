"""Validation during training: events at the cadence, the best checkpoint, its threshold
travelling through predict, segment and evaluate, and the same numbers as those runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.contract import ResourcesAsked, RunRequest, new_run_id, read_best, read_events
from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.errors import InputError
from engine.project import config as cfg
from engine.project import lineage
from engine.project.layout import Project, init_project
from engine.runs import resolve
from engine.runs.checkpoints import list_checkpoints, save_checkpoint
from engine.runs.spec import RunSpec, read_spec, write_spec
from engine.train.trainer import main as train_main
from engine.train.validation import History, val_volumes

ROOT = Path(__file__).resolve().parents[3]
EVERY, ITERATIONS = 10, 30


def _volume(project: Project, split: str, name: str, shape: tuple[int, ...], seed: int) -> Path:
    voxel_size = project.load_config().data.voxel_size
    raw, labels = synthesize(shape, voxel_size, seed=seed)
    path = project.path / split / f"{name}.zarr"
    write_volume(path, raw, labels, voxel_size)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A tiny project with train/val/test volumes and a run that validated 3 times."""
    project = init_project("p", "tiny", root=tmp_path_factory.mktemp("projects"))
    config = project.load_config()
    for key, value in [
        ("train.iterations", ITERATIONS),
        ("train.validate_every", EVERY),
        ("train.checkpoint_every", 5),
        ("train.keep_checkpoints", 1),
        ("train.learning_rate", 4e-3),
        ("train.seed", 3),
        ("system.num_workers", 0),
    ]:
        config = cfg.with_value(config, key, value)
    project.save_config(config)
    _volume(project, "train", "a", (64, 64, 64), 0)
    _volume(project, "val", "v", (40, 64, 64), 5)
    _volume(project, "test", "t", (48, 64, 64), 1)
    inputs, _ = resolve.fill_inputs(project, "train", {}, config)
    run_dir = project.runs_dir / "train"
    write_spec(
        run_dir,
        RunSpec(id="train", kind="train", project=str(project.path), config=config, inputs=inputs),
    )
    assert train_main([str(run_dir)]) == 0
    return project


def _events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(run_dir / "events.jsonl")[0] if e["type"] == kind]


def test_validation_events_at_the_cadence(trained: Project) -> None:
    points = _events(trained.runs_dir / "train", "validation")
    assert [p["step"] for p in points] == [10, 20, 30]
    best_so_far = float("inf")
    for point in points:
        assert set(point) >= {"voi_split", "voi_merge", "voi", "arand", "threshold", "volumes"}
        assert point["voi"] == pytest.approx(point["voi_split"] + point["voi_merge"])
        assert point["threshold"] in trained.load_config().segment.thresholds
        assert set(point["volumes"]) == {"v"}
        assert point["volumes"]["v"]["voxels"] > 0
        assert point["best"] == (point["voi"] < best_so_far)
        best_so_far = min(best_so_far, point["voi"])
    # The latest validation's outputs stay to look at.
    assert (trained.runs_dir / "train" / "validation" / "segmentation" / "v.zarr").is_dir()


def test_the_best_checkpoint_survives_rotation(trained: Project) -> None:
    run_dir = trained.runs_dir / "train"
    points = _events(run_dir, "validation")
    best_point = min(points, key=lambda p: (p["voi"], p["step"]))
    best = read_best(run_dir)
    assert best is not None
    assert best["iteration"] == best_point["step"]
    assert best["threshold"] == best_point["threshold"]
    assert Path(best["path"]).is_file()
    # keep_checkpoints = 1: the newest and the best, nothing else.
    kept = {i for i, _ in list_checkpoints(run_dir / "checkpoints")}
    assert kept == {ITERATIONS, best["iteration"]}
    result = _events(run_dir, "result")[-1]
    assert result["best"]["iteration"] == best["iteration"]


def test_rotation_keeps_the_protected_checkpoint(tmp_path: Path) -> None:
    for iteration in (10, 20, 30, 40):
        save_checkpoint(tmp_path, iteration, {"x": iteration}, keep=2, protect=10)
    assert [i for i, _ in list_checkpoints(tmp_path)] == [10, 30, 40]


def _run(project: Project, kind: str, inputs: dict[str, Any], workers: int = 1) -> Path:
    run_id = new_run_id(kind)
    run_dir = project.runs_dir / run_id
    answer = resolve.prepare(
        RunRequest(
            project=str(project.path),
            kind=kind,  # type: ignore[arg-type]
            inputs=inputs,
            resources=ResourcesAsked(workers=workers),
            run_id=run_id,
            run_dir=str(run_dir),
        )
    )
    assert answer.ok, answer
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", f"engine.{kind}", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_best_checkpoint_predicts_and_its_threshold_travels(trained: Project) -> None:
    """RUN_ID:best predicts; segment includes the validation threshold; evaluate reports
    it as the headline; and the val volume scores exactly what validation reported."""
    best = read_best(trained.runs_dir / "train")
    assert best is not None
    # The validation threshold is not in the project's list any more: segment adds it.
    config = trained.load_config()
    others = [t for t in config.segment.thresholds if abs(t - best["threshold"]) > 1e-6]
    trained.save_config(cfg.with_value(config, "segment.thresholds", others))
    try:
        predict = _run(trained, "predict", {"checkpoint": "train:best", "volumes": ["t", "v"]})
        assert read_spec_checkpoint(predict) == Path(best["path"]).resolve()
        for name in ("t.zarr", "v.zarr"):
            record = lineage.validation_of_output(predict / "predictions" / name)
            assert record is not None
            assert record["threshold"] == best["threshold"]
            assert record["iteration"] == best["iteration"]
        segment = _run(trained, "segment", {"predict_run": predict.name})
        dataset = f"segmentation_{best['threshold']:.2f}"
        assert (segment / "segmentation" / "t.zarr" / dataset).is_dir()
        evaluate = _run(trained, "evaluate", {"segment_run": segment.name})
    finally:
        trained.save_config(config)
    metrics = json.loads((evaluate / "metrics.json").read_text())
    assert metrics["chosen_on"] == "validation"
    headline = metrics["headline"]
    assert headline["threshold"] == pytest.approx(best["threshold"])
    row = next(r for r in metrics["per_threshold"] if r["threshold"] == headline["threshold"])
    assert headline == row
    assert metrics["oracle"]["voi"] == min(r["voi"] for r in metrics["per_threshold"])
    # Same code, same numbers: validation's scores of v at its best point.
    point = next(
        p for p in _events(trained.runs_dir / "train", "validation") if p["step"] == best["step"]
    )
    scored = metrics["volumes"]["v"]
    at = next(r for r in scored["per_threshold"] if r["threshold"] == headline["threshold"])
    for key in ("voi_split", "voi_merge", "arand"):
        assert at[key] == pytest.approx(point["volumes"]["v"][key], abs=1e-9)
    # The default checkpoint of a project whose newest run validated is its best.
    choice = lineage.resolve_checkpoint(trained.path, None)
    assert choice.iteration == best["iteration"]
    assert choice.note is not None and "best checkpoint on validation" in choice.note


def read_spec_checkpoint(run_dir: Path) -> Path:
    return Path(str(read_spec(run_dir).inputs["checkpoint"])).resolve()


def test_history_resumes_and_counts_points_since_the_best() -> None:
    events = [
        {"type": "validation", "step": 10, "voi": 2.0, "threshold": 0.5},
        {"type": "metric", "step": 11, "name": "loss", "value": 0.1},
        {"type": "validation", "step": 20, "voi": 1.5, "threshold": 0.4},
        {"type": "validation", "step": 30, "voi": 1.7, "threshold": 0.4},
        # a crashed attempt reported 40, the resumed one reports it again
        {"type": "validation", "step": 40, "voi": 9.0, "threshold": 0.4},
        {"type": "validation", "step": 40, "voi": 1.6, "threshold": 0.4},
        # after the checkpoint the run resumes from: lost with its iterations
        {"type": "validation", "step": 50, "voi": 0.1, "threshold": 0.4},
    ]
    history = History.from_events(events, up_to=40)
    assert history.best is not None
    assert (history.best["iteration"], history.best["voi"]) == (20, 1.5)
    assert history.since_best == 2
    assert history.steps == [10, 20, 30, 40]
    assert not history.add(50, 1.5, {"voi": 1.5})  # a tie keeps the earlier point
    assert history.add(60, 1.4, {"voi": 1.4})
    assert history.since_best == 0


# ---- bad input ---------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = init_project("q", "tiny", root=tmp_path)
    _volume(project, "train", "a", (32, 32, 32), 0)
    return project


def test_validation_without_val_volumes_is_refused(project: Project) -> None:
    with pytest.raises(InputError, match=r"no validation volumes.*--split val"):
        resolve.fill_inputs(project, "train", {})
    off = cfg.with_value(project.load_config(), "train.validate_every", 0)
    inputs, _ = resolve.fill_inputs(project, "train", {}, off)
    assert "val_volumes" not in inputs


def test_a_val_volume_without_labels_is_refused(project: Project) -> None:
    path = _volume(project, "val", "v", (32, 32, 32), 1)
    shutil.rmtree(path / "labels")
    with pytest.raises(InputError, match="val/v has no labels"):
        val_volumes(project.path, project.load_config(), None)


def test_a_val_volume_at_another_resolution_is_refused(project: Project) -> None:
    raw, labels = synthesize((16, 32, 32), [16, 16, 16], seed=1)
    write_volume(project.path / "val" / "coarse.zarr", raw, labels, [16, 16, 16])
    with pytest.raises(InputError, match=r"val/coarse has voxel size \[16, 16, 16\]"):
        resolve.fill_inputs(project, "train", {})


def test_stop_after_needs_validation(project: Project) -> None:
    config = cfg.with_value(project.load_config(), "train.validate_every", 0)
    with pytest.raises(InputError, match=r"train\.stop_after"):
        cfg.with_value(config, "train.stop_after", 3)


def test_best_of_a_run_without_validation_is_refused(project: Project) -> None:
    run_dir = project.runs_dir / "plain"
    write_spec(
        run_dir,
        RunSpec(id="plain", kind="train", project=str(project.path), config=project.load_config()),
    )
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "checkpoint_00000002.pt").write_bytes(b"")
    with pytest.raises(InputError, match="plain has no validation results"):
        lineage.resolve_checkpoint(project.path, "plain:best")
    # Without validation the default is the latest checkpoint, as before.
    assert lineage.resolve_checkpoint(project.path, None).iteration == 2


def test_stop_after_ends_the_run_at_the_first_point_without_a_new_best(
    project: Project,
) -> None:
    """stop_after = 1: the run stops at the first validation point that is not a new best
    (with a checkpoint and a result saying why), or, if every point improved, trains to
    the end. Either way the events must agree with that rule."""
    _volume(project, "val", "v", (16, 32, 32), 5)
    config = project.load_config()
    for key, value in [
        ("model.input_shape", [20, 20, 20]),
        ("train.iterations", 40),
        ("train.validate_every", 5),
        ("train.stop_after", 1),
        ("train.learning_rate", 4e-3),
        ("train.seed", 2),
        ("system.num_workers", 0),
    ]:
        config = cfg.with_value(config, key, value)
    inputs, _ = resolve.fill_inputs(project, "train", {}, config)
    run_dir = project.runs_dir / "early"
    write_spec(
        run_dir,
        RunSpec(id="early", kind="train", project=str(project.path), config=config, inputs=inputs),
    )
    assert train_main([str(run_dir)]) == 0
    points = _events(run_dir, "validation")
    result = _events(run_dir, "result")[-1]
    flags = [p["best"] for p in points]
    print("stop_after test:", [(p["step"], round(p["voi"], 3), p["best"]) for p in points])
    if result["stopped_early"]:
        assert flags == [True] * (len(flags) - 1) + [False]
        assert result["iterations"] == points[-1]["step"] < 40
        assert "train.stop_after 1" in result["stopped_early"]
        assert list_checkpoints(run_dir / "checkpoints")[-1][0] == points[-1]["step"]
    else:
        assert all(flags) and result["iterations"] == 40
    best = read_best(run_dir)
    assert best is not None and best["iteration"] == max(p["step"] for p in points if p["best"])
