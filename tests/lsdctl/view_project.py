"""A project with a test volume and finished predict, segment and evaluate runs, made by
hand in the run-directory contract's layout (engine.create_array writes every array), for
the viewer's tests: no training, a second to build."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from engine.contract import EventWriter
from engine.data.synth import synthesize
from engine.data.volume import create_array, write_volume
from engine.project import config as cfg
from engine.project.layout import init_project
from engine.runs.spec import RunSpec, write_spec

VOXEL = (40, 8, 8)
SHAPE = (12, 64, 64)
VOLUME_OFFSET = (400, 80, 160)
# Predictions and segmentations cover less than the volume (as blockwise runs do).
OUTPUT_OFFSET = (480, 96, 176)
OUTPUT_SHAPE = (8, 56, 56)
THRESHOLDS = (0.3, 0.5, 0.7)
BEST = 0.5

PREDICT = "predict-20260101-000100-aaaa"
SEGMENT = "segment-20260101-000200-bbbb"
EVALUATE = "evaluate-20260101-000300-cccc"
TRAIN = "train-20260101-000000-dddd"


@dataclass(frozen=True)
class ViewProject:
    path: Path
    volume: Path
    labels: np.ndarray


def make_view_project(
    root: Path, name: str = "viewp", validated: float | None = None
) -> ViewProject:
    """Project `name` in `root`; `validated`: the segmentation carries that threshold as
    chosen on validation (and evaluate's headline is chosen there)."""
    project = init_project(name, "tiny", root=root).path
    config = cfg.from_preset("tiny")
    raw, labels = synthesize(SHAPE, VOXEL, seed=5)
    volume = project / "test" / "vol.zarr"
    write_volume(volume, raw, labels, VOXEL, offset=VOLUME_OFFSET)
    inner = tuple(
        slice((o - v) // s, (o - v) // s + n)
        for o, v, s, n in zip(OUTPUT_OFFSET, VOLUME_OFFSET, VOXEL, OUTPUT_SHAPE)
    )

    predict_dir = _run(project, PREDICT, "predict", config, {"train_run": TRAIN})
    prediction = predict_dir / "predictions" / "vol.zarr"
    for array, channels in (("pred_lsds", 10), ("pred_affs", 3)):
        data = np.random.default_rng(0).integers(0, 255, (channels, *OUTPUT_SHAPE), np.uint8)
        create_array(prediction, array, data.shape, np.uint8, VOXEL, OUTPUT_OFFSET)[:] = data
    attrs = {"source_volume": str(volume.absolute())}
    if validated is not None:
        attrs["validation"] = {"threshold": validated, "step": 100, "voi": 1.0}
    zarr.open_group(str(prediction), mode="a").attrs.update(attrs)
    _result(predict_dir, prediction)

    segment_dir = _run(project, SEGMENT, "segment", config, {"predict_run": str(predict_dir)})
    segmentation = segment_dir / "segmentation" / "vol.zarr"
    truth = labels[inner]
    for array, values in (
        ("fragments", truth),
        *((f"segmentation_{t:.2f}", truth + np.uint64(i)) for i, t in enumerate(THRESHOLDS)),
    ):
        create_array(segmentation, array, OUTPUT_SHAPE, np.uint64, VOXEL, OUTPUT_OFFSET)[:] = values
    zarr.open_group(str(segmentation), mode="a").attrs.update(
        {**attrs, "prediction": str(prediction.absolute())}
    )
    _result(segment_dir, segmentation)

    evaluate_dir = _run(project, EVALUATE, "evaluate", config, {"segment_run": str(segment_dir)})
    rows = [{"threshold": t, "voi": abs(t - BEST) + 0.5, "arand": 0.1} for t in THRESHOLDS]
    oracle = rows[THRESHOLDS.index(BEST)]
    chosen = rows[THRESHOLDS.index(validated)] if validated is not None else oracle
    metrics = {
        "per_threshold": rows,
        "oracle": oracle,
        "headline": chosen,
        "chosen_on": "validation" if validated is not None else "test",
    }
    (evaluate_dir / "metrics.json").write_text(json.dumps(metrics))
    _result(evaluate_dir, None)
    return ViewProject(project, volume, labels)


def _run(project: Path, run_id: str, kind: str, config: cfg.ProjectConfig, inputs: dict) -> Path:  # type: ignore[type-arg]
    run_dir = project / "runs" / run_id
    created = f"2026-01-01T{run_id.split('-')[2][:2]}:{run_id.split('-')[2][2:4]}:00+00:00"
    spec = RunSpec(
        id=run_id, kind=kind, project=str(project), config=config, created=created, inputs=inputs
    )  # type: ignore[arg-type]
    write_spec(run_dir, spec)
    return run_dir


def _result(run_dir: Path, output: Path | None) -> None:
    events = EventWriter(run_dir / "events.jsonl")
    outputs = [str(output.absolute())] if output is not None else []
    events.emit("result", outputs=outputs)
    events.close()
