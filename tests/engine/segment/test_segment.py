"""Blockwise segmentation on daisy workers against the whole-volume waterz result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from engine.contract import read_events
from engine.data.synth import affinities_from_labels, synthesize
from engine.data.volume import create_array, write_volume
from engine.evaluate.metrics import score
from engine.project import config as cfg
from engine.project.layout import Project, init_project
from engine.runs.spec import Resources, RunSpec, write_spec
from engine.segment.segmentation import dataset_name, segment_in_memory

ROOT = Path(__file__).resolve().parents[3]
NEIGHBORHOOD = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]


def fake_prediction(folder: Path, shape: tuple[int, ...], seed: int = 5) -> Path:
    """Affinities as a network predicts them: high inside cells, low on a boundary a few
    voxels wide around every label edge, with noise; written as a prediction zarr beside
    its source volume (labels as ground truth)."""
    dims = len(shape)
    voxel_size = [8] * dims
    raw, labels = synthesize(shape, voxel_size, seed=seed)
    write_volume(folder / "volume.zarr", raw, labels, voxel_size)
    affs = affinities_from_labels(labels, seed=seed)
    prediction = folder / "prediction.zarr"
    create_array(prediction, "pred_affs", affs.shape, np.uint8, voxel_size, [0] * dims)[:] = (
        np.rint(affs * 255).astype(np.uint8)
    )
    neighborhood = NEIGHBORHOOD if dims == 3 else [o[1:] for o in NEIGHBORHOOD[1:]]
    zarr.open_group(str(prediction), mode="a").attrs.update(
        {"source_volume": str(folder / "volume.zarr"), "neighborhood": neighborhood}
    )
    return prediction


def _segment_run(
    project: Project, prediction: Path, name: str, workers: int = 2, **settings: object
) -> Path:
    config = project.load_config()
    for key, value in settings.items():
        config = cfg.with_value(config, f"segment.{key}", value)
    run_dir = project.runs_dir / name
    write_spec(
        run_dir,
        RunSpec(
            id=name,
            kind="segment",
            project=str(project.path),
            config=config,
            inputs={"volumes": [str(prediction)]},
            resources=Resources(workers=workers),
        ),
    )
    return run_dir


def _run(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.segment", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def _segmentation(run_dir: Path, prediction: Path, threshold: float) -> np.ndarray:
    path = run_dir / "segmentation" / prediction.name / dataset_name(threshold)
    return zarr.open(str(path), mode="r")[:]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b are the same segmentation up to the ids (0 stays 0)."""
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = init_project("seg", "tiny", root=tmp_path_factory.mktemp("projects"))
    config = cfg.with_value(project.load_config(), "segment.thresholds", [0.1, 0.3, 0.5, 0.8])
    project.save_config(config)
    return project


@pytest.fixture(scope="module")
def prediction(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_prediction(tmp_path_factory.mktemp("pred"), (56, 84, 84))


def test_one_block_over_the_volume_is_waterz_exactly(project: Project, prediction: Path) -> None:
    run_dir = _segment_run(project, prediction, "one-block", workers=1, block_shape=[56, 84, 84])
    done = _run(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    config = project.load_config()
    reference = segment_in_memory(zarr.open(str(prediction / "pred_affs"))[:], config)
    gt = zarr.open(str(prediction.parent / "volume.zarr" / "labels"))[:]
    for threshold in config.segment.thresholds:
        got = _segmentation(run_dir, prediction, threshold)
        assert _same_partition(got, reference[threshold]), threshold
    # and the segmentation is a real one: far closer to the labels than all-in-one
    best = min(
        (lambda s: s.voi_split + s.voi_merge)(score(_segmentation(run_dir, prediction, t), gt))
        for t in config.segment.thresholds
    )
    merged = score(np.ones_like(gt), gt)
    assert best < 0.5 * (merged.voi_split + merged.voi_merge)


def test_several_blocks_agree_with_the_whole_volume(project: Project, prediction: Path) -> None:
    run_dir = _segment_run(project, prediction, "blocks", block_shape=[28, 28, 28])  # 2x3x3
    done = _run(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    config = project.load_config()
    reference = segment_in_memory(zarr.open(str(prediction / "pred_affs"))[:], config)
    for threshold in config.segment.thresholds:
        got = _segmentation(run_dir, prediction, threshold)
        s = score(got, reference[threshold].astype(np.uint64))
        print(f"threshold {threshold}: VOI(blockwise, whole) = {s.voi_split + s.voi_merge:.4f}")
        assert s.voi_split + s.voi_merge <= 0.05, threshold
    events, _ = read_events(run_dir / "events.jsonl")
    tasks = {e["task"] for e in events if e["type"] == "block" and e["status"] == "done"}
    assert tasks == {f"{s}-prediction" for s in ("fragments", "agglomerate", "relabel")}
    (result,) = [e for e in events if e["type"] == "result"]
    assert result["thresholds"] == config.segment.thresholds
    fragments = zarr.open(str(run_dir / "segmentation" / prediction.name / "fragments"))
    assert fragments.chunks == (28, 28, 28)
    ids = np.unique(fragments[:])
    assert len(ids) > 50
    # started again: every block of every stage is recorded as done
    again = _run(run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    events, _ = read_events(run_dir / "events.jsonl")
    assert sum(e["type"] == "result" for e in events) == 2
    assert sum(e["type"] == "block" and e["status"] == "done" for e in events) == 3 * 18


def test_2d_and_mutex(project: Project, tmp_path: Path) -> None:
    project2d = init_project("seg2d", "tiny2d", root=tmp_path)
    prediction = fake_prediction(tmp_path / "p", (120, 120))
    for method in ("watershed", "mutex"):
        run_dir = _segment_run(project2d, prediction, f"2d-{method}", fragments_method=method)
        done = _run(run_dir)
        assert done.returncode == 0, done.stderr[-3000:]
        segmentation = _segmentation(run_dir, prediction, 0.5)
        assert segmentation.shape == (120, 120)
        assert len(np.unique(segmentation)) > 5


def test_a_merge_function_waterz_cannot_run_is_refused(project: Project, prediction: Path) -> None:
    run_dir = _segment_run(project, prediction, "max", merge_function="max")
    done = _run(run_dir)
    assert done.returncode == 2
    assert "not prebuilt" in done.stderr and "Traceback" not in done.stderr
    assert not (run_dir / "segmentation").exists()
