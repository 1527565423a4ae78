"""engine.evaluate.evaluation: a hand-made segment run scored against its labels, in a
subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr
from skimage.metrics import variation_of_information

from engine.contract import EventWriter, read_events
from engine.data.volume import create_array, write_volume
from engine.evaluate.metrics import score
from engine.project import config as cfg
from engine.runs.spec import RunSpec, write_spec

ROOT = Path(__file__).parents[3]
VOXEL = (8, 8, 8)
# Labels cover z 0..12 voxels; the segmentation only z 4..12 (offset 32 nm): the
# evaluation must score the overlap.
LABELS_SHAPE = (12, 16, 16)
SEG_START = 4


def labels_volume() -> tuple[np.ndarray, np.ndarray]:
    """Four cells and a background strip; the mask leaves out the last four x columns."""
    labels = np.zeros(LABELS_SHAPE, dtype=np.uint64)
    labels[:, :8, :8], labels[:, :8, 8:] = 1, 2
    labels[:, 8:, :8], labels[:, 8:15, 8:] = 3, 4  # y = 15: background
    mask = np.ones(LABELS_SHAPE, dtype=np.uint8)
    mask[:, :, 12:] = 0
    return labels, mask


def make_segment_run(
    project: Path,
    *,
    with_labels: bool = True,
    run_id: str = "segment-20260101-000000-aaaa",
    created: str = "2026-01-01T00:00:00+00:00",
) -> Path:
    """A finished segment run as the contract describes it, with one test volume.

    segmentation_0.10 equals the labels where they count (other ids; wrong only where
    masked out or background); segmentation_0.90 merges everything into one segment.
    """
    labels, mask = labels_volume()
    raw = np.zeros(LABELS_SHAPE, dtype=np.uint8)
    volume = project / "test" / "vol.zarr"
    if with_labels:
        write_volume(volume, raw, labels, VOXEL, mask=mask)
    else:
        write_volume(volume, raw, None, VOXEL)
    run_dir = project / "runs" / run_id
    config = cfg.from_preset("tiny")
    write_spec(
        run_dir,
        RunSpec(
            id=run_id,
            kind="segment",
            project=str(project),
            config=config,
            created=created,
            inputs={"predict_run": str(project / "runs" / "predict-x"), "volumes": []},
        ),
    )
    container = run_dir / "segmentation" / "vol.zarr"
    offset = [SEG_START * VOXEL[0], 0, 0]
    shape = (LABELS_SHAPE[0] - SEG_START, *LABELS_SHAPE[1:])
    good = labels[SEG_START:] + np.uint64(100)
    good[:, :, 12:] = 7  # masked out: must not count
    good[:, 15, 8:] = 9  # background: must not count
    for name, values in (
        ("fragments", good),
        ("segmentation_0.10", good),
        ("segmentation_0.90", np.ones(shape, dtype=np.uint64)),
    ):
        create_array(container, name, shape, np.uint64, VOXEL, offset)[:] = values
    zarr.open_group(str(container), mode="a").attrs["source_volume"] = str(volume.absolute())
    events = EventWriter(run_dir / "events.jsonl")
    events.emit("result", outputs=[str(container.absolute())], thresholds=[0.1, 0.9])
    events.close()
    return run_dir


def make_evaluate_run(project: Path, segment_run: Path) -> Path:
    run_dir = project / "runs" / "evaluate-1"
    write_spec(
        run_dir,
        RunSpec(
            id="evaluate-1",
            kind="evaluate",
            project=str(project),
            config=cfg.from_preset("tiny"),
            inputs={"segment_run": str(segment_run)},
        ),
    )
    return run_dir


def _evaluate(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.evaluate", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_scores_each_threshold_on_the_overlap_and_picks_the_best(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    run_dir = make_evaluate_run(project, make_segment_run(project))
    done = _evaluate(run_dir)
    assert done.returncode == 0, done.stderr

    metrics = json.loads((run_dir / "metrics.json").read_text())
    volume = metrics["volumes"]["vol"]
    assert volume["roi"] == {"offset": [32, 0, 0], "shape": [64, 128, 128]}
    labels, mask = labels_volume()
    truth = np.where(mask > 0, labels, 0)[SEG_START:]
    assert volume["voxels"] == int((truth != 0).sum())
    perfect, merged = volume["per_threshold"]
    assert perfect["threshold"] == 0.1 and perfect["dataset"] == "segmentation_0.10"
    assert perfect["voi_split"] == perfect["voi_merge"] == perfect["arand"] == 0.0
    expected = score(np.ones_like(truth), truth)
    split, merge = variation_of_information(truth, np.ones_like(truth), ignore_labels=(0,))
    assert merged["voi_merge"] > 1.0 and merged["voi_split"] == 0.0
    assert np.isclose(merged["voi_merge"], expected.voi_merge)
    assert np.isclose(merged["voi_merge"], merge) and np.isclose(merged["voi_split"], split)
    assert np.isclose(merged["arand"], expected.arand) and merged["arand"] > 0.5
    assert np.isclose(merged["voi"], merged["voi_split"] + merged["voi_merge"])
    # One volume: the overall scores are its own.
    assert metrics["per_threshold"] == volume["per_threshold"]
    assert volume["oracle"]["threshold"] == metrics["oracle"]["threshold"] == 0.1
    # No validation behind this segmentation: the headline is chosen on the test labels.
    assert metrics["chosen_on"] == "test" and metrics["headline"] == metrics["oracle"]
    # The one-segment baseline is the merged segmentation's score, on the same voxels.
    one = metrics["baselines"]["one_segment"]
    assert one == volume["baselines"]["one_segment"]
    assert np.isclose(one["voi_merge"], merged["voi_merge"]) and one["voi_split"] == 0.0

    assert (run_dir / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events, _ = read_events(run_dir / "events.jsonl")
    result = events[-1]
    assert result["type"] == "result" and result["threshold"] == 0.1
    assert result["chosen_on"] == "test"
    assert result["metrics"] == str(run_dir / "metrics.json")
    # Progress counts the blocks of the evaluation (one per segmentation chunk).
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] >= 1


def test_missing_labels_is_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    run_dir = make_evaluate_run(project, make_segment_run(project, with_labels=False))
    done = _evaluate(run_dir)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: volume ") and "has no labels" in line
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "scores.png").exists()
    events, _ = read_events(run_dir / "events.jsonl")
    assert events[-1]["type"] == "error" and "has no labels" in events[-1]["message"]


def test_reads_beyond_an_array_as_zeros(tmp_path: Path) -> None:
    from engine.evaluate.block_counts import _Placed

    create_array(tmp_path / "v.zarr", "a", (2, 2, 2), np.uint8, VOXEL, (8, 8, 8))[:] = 5
    read = _Placed(tmp_path / "v.zarr" / "a").read((0, 8, 8), (24, 16, 16))
    assert read.shape == (3, 2, 2)
    assert (read[0] == 0).all() and (read[1:] == 5).all()


def test_overall_scores_weigh_volumes_by_scored_voxels() -> None:
    from engine.evaluate.evaluation import best_of, combine

    def row(t: float, split: float, merge: float, arand: float) -> dict[str, object]:
        scores = {"voi_split": split, "voi_merge": merge, "voi": split + merge, "arand": arand}
        return {"threshold": t, "dataset": f"segmentation_{t:.2f}", **scores}

    volumes = {
        "a": {"voxels": 300, "per_threshold": [row(0.1, 1.0, 0.0, 0.2), row(0.5, 0.0, 1.0, 0.4)]},
        "b": {"voxels": 100, "per_threshold": [row(0.5, 0.0, 0.0, 0.0), row(0.9, 0.0, 2.0, 0.8)]},
    }
    (shared,) = combine(volumes)  # only 0.5 is in both
    assert shared["threshold"] == 0.5
    assert np.isclose(shared["voi_merge"], 0.75) and np.isclose(shared["arand"], 0.3)
    # Equal VOI: the lower adapted Rand error wins, then the lower threshold.
    rows = [row(0.3, 0.5, 0.5, 0.1), row(0.2, 0.0, 1.0, 0.1), row(0.4, 1.0, 0.0, 0.05)]
    assert best_of(rows)["threshold"] == 0.4
    assert best_of(rows[:2])["threshold"] == 0.2
