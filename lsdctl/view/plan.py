"""What `lsdctl view` shows: the layers of a run or a project, decided from disk alone.

A train run: its latest snapshot (raw, labels, targets and predictions of one training
sample, each with its own offset, centred in raw). A predict run: its predictions over
their source volume. A segment run: raw and labels of the source volume, the
predictions it segmented, its fragments and the segmentation at one threshold. An
evaluate run: the segment run it scored, at the threshold it reports. A project: its
newest succeeded predict, segment and evaluate runs together; without any, the newest
train run's snapshot; without one, a volume of the project.

The threshold, unless given: the one chosen on validation (the evaluate run's headline
when it was chosen there, or the choice the segmentation carries from its checkpoint),
else the best one the evaluate run found on the scored labels, else the middle one.

Light: no zarr, neuroglancer or torch at import (the TUI and the CLI import it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.errors import InputError
from engine.project import lineage
from engine.project.layout import SPLITS

# Layer roles, in the order the viewer lists them.
ROLES = ("raw", "labels", "gt_lsds", "lsds", "gt_affs", "affs", "fragments", "segmentation")
_PREDICTIONS = "predictions"
_SEGMENTATION = "segmentation"
_SNAPSHOTS = "snapshots"
# Snapshot arrays: name in the zarr → (layer role).
_SNAPSHOT_ROLES = {
    "raw": "raw",
    "labels": "labels",
    "gt_lsds": "gt_lsds",
    "pred_lsds": "lsds",
    "gt_affs": "gt_affs",
    "pred_affs": "affs",
}
# Float arrays at most this large get their value range measured (snapshots).
_MEASURE_VOXELS = 64 * 1024**2


@dataclass(frozen=True)
class Layer:
    """One array to show: where it is and where it lies in the world (nm)."""

    name: str
    role: str
    kind: Literal["image", "segmentation"]
    container: Path
    array: str
    voxel_size: tuple[int, ...]
    offset: tuple[int, ...]
    shape: tuple[int, ...]
    """Spatial shape, in voxels."""
    channels: int
    """Length of the leading channel axis; 0 when there is none."""
    dtype: str
    visible: bool = False
    value_range: tuple[float, float] | None = None
    """Range of a float image's values, for its shader."""

    @property
    def path(self) -> Path:
        return self.container / self.array


@dataclass(frozen=True)
class ViewPlan:
    """The layers to show, where to look first, and what was chosen on the way."""

    title: str
    layers: list[Layer]
    voxel_size: tuple[int, ...]
    centre: tuple[float, ...]
    """The centre of the first layer's volume, in nm (z, y, x)."""
    threshold: float | None = None
    notes: list[str] = field(default_factory=list)
    """One line each: which runs and volume are shown, why this threshold."""

    @property
    def dims(self) -> int:
        return len(self.voxel_size)


def plan_view(
    project_path: Path,
    run: str | None = None,
    volume: str | None = None,
    threshold: float | None = None,
) -> ViewPlan:
    """The view of `run` (an id of the project, or a run folder), else of the project.

    InputError, naming what exists, for an unknown run or volume, a threshold that was
    not segmented, or nothing to show.
    """
    project_path = Path(project_path)
    if run is None or not run.strip():
        return _project_view(project_path, volume, threshold)
    record = _find_run(project_path, run.strip())
    if record.kind == "train":
        if threshold is not None:
            raise InputError(f"--threshold: train run {record.id} has no segmentation")
        return _train_view(record, volume)
    predict = segment = evaluate = None
    if record.kind == "predict":
        predict = record
    elif record.kind == "segment":
        segment = record
    elif record.kind == "evaluate":
        evaluate = record
        segment = _parent(record)
    else:
        raise InputError(f"run {record.id} is a {record.kind} run: nothing to show")
    if segment is not None:
        predict = _parent(segment)
    return _chain_view(project_path, record.id, predict, segment, evaluate, volume, threshold)


# ---- what to show ------------------------------------------------------------------------
def _project_view(project_path: Path, volume: str | None, threshold: float | None) -> ViewPlan:
    predict = lineage.latest_succeeded(project_path, "predict")
    segment = lineage.latest_succeeded(project_path, "segment")
    if predict or segment:
        # The threshold comes from the newest evaluate run of that segmentation.
        return _chain_view(
            project_path, project_path.name, predict, segment, None, volume, threshold
        )
    if threshold is not None:
        raise InputError(
            f"--threshold: project {project_path.name} has no succeeded segment run yet "
            f"(lsdctl segment --project {project_path.name})"
        )
    train = next(
        (r for r in reversed(lineage.list_runs(project_path, "train")) if _snapshots(r.dir)),
        None,
    )
    if train is not None and volume is None:
        return _train_view(train, None)
    return _volume_view(project_path, volume)


def _chain_view(
    project_path: Path,
    title: str,
    predict: lineage.RunRecord | None,
    segment: lineage.RunRecord | None,
    evaluate: lineage.RunRecord | None,
    volume: str | None,
    threshold: float | None,
) -> ViewPlan:
    segmentations = _outputs(segment, _SEGMENTATION)
    predictions = _outputs(predict, _PREDICTIONS)
    offered = segmentations or predictions
    shown = segment or predict
    assert shown is not None
    if not offered:
        raise InputError(
            f"{shown.kind} run {shown.id} ({shown.status}) has no outputs to show yet"
            + (f": {shown.error}" if shown.error else "")
        )
    name = _pick_volume(offered, volume, f"{shown.kind} run {shown.id}")
    notes: list[str] = []
    layers: list[Layer] = []
    seg_container = segmentations.get(name)
    pred_container = predictions.get(name)
    if seg_container is not None and pred_container is None:
        named = (_read_json(seg_container / ".zattrs") or {}).get("prediction")
        if named and (Path(str(named)) / ".zgroup").is_file():
            pred_container = Path(str(named))
    source = lineage.source_volume(offered[name])
    if source is not None and source.is_dir():
        layers += _volume_layers(source)
        notes.append(f"volume {source.parent.name}/{source.stem}")
    if pred_container is not None:
        layers += _array_layers(pred_container, {"pred_lsds": "lsds", "pred_affs": "affs"})
        notes.append(f"predictions {_run_of(pred_container, predict)}")
    chosen = None
    if seg_container is not None and segment is not None:
        chosen, why = _threshold(seg_container, segment, evaluate, threshold)
        layers += _array_layers(seg_container, {"fragments": "fragments"})
        dataset = _segmentations(seg_container)[chosen]
        layers.append(_layer(seg_container, dataset, "segmentation", dataset))
        notes.append(f"segmentation {segment.id} at threshold {chosen:.2f} ({why})")
    elif threshold is not None:
        raise InputError(
            f"--threshold: {shown.kind} run {shown.id} has no segmentation of volume {name}"
        )
    return _finish(f"{title}: {name}", layers, notes, chosen)


def _train_view(record: lineage.RunRecord, volume: str | None) -> ViewPlan:
    if volume is not None:
        raise InputError(f"--volume: train run {record.id} shows its latest snapshot, not a volume")
    snapshots = _snapshots(record.dir)
    if not snapshots:
        raise InputError(
            f"train run {record.id} ({record.status}) has no snapshot to show yet: one is "
            "written every train.snapshot_every iterations (0 writes none)"
        )
    snapshot = snapshots[-1]
    group = _read_json(snapshot / ".zattrs") or {}
    raw = _read_json(snapshot / "raw" / ".zarray")
    raw_shape = [int(s) for s in raw.get("shape", [])] if raw else []
    layers = []
    for array, role in _SNAPSHOT_ROLES.items():
        if (snapshot / array / ".zarray").is_file():
            layers.append(_layer(snapshot, array, role, array, group, raw_shape))
    iteration = snapshot.stem.rpartition("_")[2].lstrip("0") or "0"
    notes = [f"train run {record.id}, snapshot at iteration {iteration}"]
    return _finish(f"{record.id}: iteration {iteration}", layers, notes, None)


def _volume_view(project_path: Path, volume: str | None) -> ViewPlan:
    found: dict[str, Path] = {}
    for split in SPLITS:
        folder = project_path / split
        for path in sorted(folder.glob("*.zarr")) if folder.is_dir() else []:
            found.setdefault(path.stem, path)
    if not found:
        raise InputError(
            f"project {project_path.name} has nothing to show yet: import a volume "
            f"(lsdctl data import FILE --project {project_path.name})"
        )
    name = _pick_volume(found, volume, f"project {project_path.name}")
    source = found[name]
    notes = [f"volume {source.parent.name}/{name} (no predictions or segmentations yet)"]
    return _finish(f"{project_path.name}: {name}", _volume_layers(source), notes, None)


def _finish(title: str, layers: list[Layer], notes: list[str], threshold: float | None) -> ViewPlan:
    if not layers:
        raise InputError(f"{title}: no arrays to show")
    # Raw always; of the rest, the most derived one (the segmentation, else predictions).
    shown = {"raw"}
    for role in reversed(ROLES):
        if any(layer.role == role for layer in layers) and role != "raw":
            shown.add(role)
            break
    layers = sorted(layers, key=lambda layer: ROLES.index(layer.role))
    layers = [_visible(layer, layer.role in shown) for layer in layers]
    first = layers[0]
    centre = tuple(o + s * v / 2 for o, s, v in zip(first.offset, first.shape, first.voxel_size))
    return ViewPlan(title, layers, first.voxel_size, centre, threshold, notes)


def _visible(layer: Layer, visible: bool) -> Layer:
    return Layer(**{**layer.__dict__, "visible": visible})


# ---- thresholds --------------------------------------------------------------------------
def _threshold(
    container: Path,
    segment: lineage.RunRecord,
    evaluate: lineage.RunRecord | None,
    given: float | None,
) -> tuple[float, str]:
    """(threshold, why) of the segmentation to show; it is one of the container's."""
    have = _segmentations(container)
    if not have:
        raise InputError(f"segment run {segment.id} has no segmentation in {container.name}")
    listed = ", ".join(f"{t:.2f}" for t in have)
    if given is not None:
        match = _match(have, given)
        if match is None:
            raise InputError(
                f"--threshold {given:g}: segment run {segment.id} has no segmentation at it; "
                f"it has {listed}"
            )
        return match, "given"
    scores = _headline(evaluate or _evaluation_of(segment))
    if scores is not None and scores[1] == "validation":
        match = _match(have, scores[0])
        if match is not None:
            return match, f"chosen on validation, evaluate run {scores[2]}"
    carried = lineage.validation_of_output(container)
    if carried is not None:
        match = _match(have, float(carried["threshold"]))
        if match is not None:
            return match, "chosen on validation during training"
    if scores is not None:
        match = _match(have, scores[0])
        if match is not None:
            return match, f"best VOI of evaluate run {scores[2]}"
    middle = list(have)[len(have) // 2]
    return middle, "the middle one: no evaluate run scored this segmentation"


def _headline(evaluate: lineage.RunRecord | None) -> tuple[float, str, str] | None:
    """(threshold, what chose it, run id) of an evaluate run's headline scores."""
    if evaluate is None:
        return None
    metrics = _read_json(evaluate.dir / lineage.METRICS_FILE)
    try:
        scores, chosen_on, _ = lineage.headline(metrics or {})
        return float(scores["threshold"]), chosen_on, evaluate.id
    except (KeyError, TypeError, ValueError):
        return None


def _evaluation_of(segment: lineage.RunRecord) -> lineage.RunRecord | None:
    """The newest succeeded evaluate run of `segment`."""
    runs = lineage.list_runs(segment.dir.parent.parent, "evaluate")
    return next((r for r in reversed(runs) if r.succeeded and _same(_parent(r), segment)), None)


def _same(a: lineage.RunRecord | None, b: lineage.RunRecord) -> bool:
    return a is not None and a.dir.resolve() == b.dir.resolve()


def _match(have: dict[float, str], wanted: float) -> float | None:
    return next((t for t in have if abs(t - wanted) < 5e-3), None)


def _segmentations(container: Path) -> dict[float, str]:
    """threshold → `segmentation_<t>` array of a segmentation container, ascending."""
    from engine.project.lineage import segmentation_datasets

    return dict(segmentation_datasets(container))


# ---- runs and outputs --------------------------------------------------------------------
def _find_run(project_path: Path, spec: str) -> lineage.RunRecord:
    run_dir = Path(spec) if "/" in spec else project_path / "runs" / spec
    record = lineage.read_run(run_dir) if lineage.is_dir(run_dir) else None
    if record is None:
        runs = lineage.list_runs(project_path)
        newest = ", ".join(f"{r.id} ({r.kind})" for r in reversed(runs[-5:]))
        have = f"its newest runs: {newest}" if runs else "it has no runs yet"
        raise InputError(f"no run {spec!r} in project {project_path.name}: {have}")
    return record


def _parent(record: lineage.RunRecord) -> lineage.RunRecord | None:
    parent = record.parent
    if parent is None:
        return None
    path = Path(parent)
    run_dir = path if path.is_absolute() else record.dir.parent / parent
    return lineage.read_run(run_dir) if lineage.is_dir(run_dir) else None


def _outputs(record: lineage.RunRecord | None, folder: str) -> dict[str, Path]:
    if record is None:
        return {}
    return {p.stem: p for p in lineage.run_outputs(record.dir, folder) if (p / ".zgroup").is_file()}


def _run_of(container: Path, record: lineage.RunRecord | None) -> str:
    if record is not None and container.is_relative_to(record.dir):
        return record.id
    return container.parent.parent.name


def _snapshots(run_dir: Path) -> list[Path]:
    folder = run_dir / _SNAPSHOTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("iteration_*.zarr") if (p / "raw" / ".zarray").is_file())


def _pick_volume(offered: dict[str, Path], volume: str | None, where: str) -> str:
    if volume is None:
        return sorted(offered)[0]
    name = volume.removesuffix(".zarr").rpartition("/")[2]
    if name not in offered:
        raise InputError(f"no volume {volume!r} in {where}: it has {', '.join(sorted(offered))}")
    return name


# ---- arrays ------------------------------------------------------------------------------
def _volume_layers(volume: Path) -> list[Layer]:
    return _array_layers(volume, {"raw": "raw", "labels": "labels"})


def _array_layers(container: Path, roles: dict[str, str]) -> list[Layer]:
    return [
        _layer(container, array, role, array)
        for array, role in roles.items()
        if (container / array / ".zarray").is_file()
    ]


def _layer(
    container: Path,
    array: str,
    role: str,
    name: str,
    group: dict[str, Any] | None = None,
    centred_in: Sequence[int] | None = None,
) -> Layer:
    """The layer of `container/array`, placed by its funlib attributes.

    Arrays without them (snapshots written before per-array offsets) take the group's
    voxel size and are centred in `centred_in` (raw's shape).
    """
    meta = _read_json(container / array / ".zarray") or {}
    attrs = _read_json(container / array / ".zattrs") or {}
    shape = [int(s) for s in meta.get("shape", [])]
    voxel_size = (
        attrs.get("voxel_size") or attrs.get("resolution") or (group or {}).get("voxel_size")
    )
    if not voxel_size:
        raise InputError(f"{container / array} has no voxel size (zarr attribute voxel_size)")
    dims = len(voxel_size)
    spatial = shape[-dims:]
    offset = attrs.get("offset")
    if offset is None:
        reference = list(centred_in[-dims:]) if centred_in else spatial
        offset = [(r - s) // 2 * int(v) for r, s, v in zip(reference, spatial, voxel_size)]
    dtype = str(meta.get("dtype", "")).lstrip("<>|=")
    kind: Literal["image", "segmentation"] = (
        "segmentation" if role in ("labels", "fragments", "segmentation") else "image"
    )
    return Layer(
        name=name,
        role=role,
        kind=kind,
        container=container,
        array=array,
        voxel_size=tuple(int(v) for v in voxel_size),
        offset=tuple(int(o) for o in offset),
        shape=tuple(spatial),
        channels=shape[0] if len(shape) > dims else 0,
        dtype=dtype,
        value_range=_value_range(container / array, shape) if dtype.startswith("f") else None,
    )


def _value_range(path: Path, shape: Sequence[int]) -> tuple[float, float] | None:
    """Min and max of a small float array (snapshots); None for a large one."""
    voxels = 1
    for s in shape:
        voxels *= s
    if voxels > _MEASURE_VOXELS:
        return None
    import numpy as np
    import zarr

    data = np.asarray(zarr.open_array(str(path), mode="r")[...])
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    return (low, high if high > low else low + 1.0)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
