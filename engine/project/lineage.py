"""Which runs a project has and what they produced, read from disk alone (no daemon).

A run is a folder `PROJECT/runs/RUN_ID/` with its `run.toml`; it succeeded when the last
terminal event in its `events.jsonl` ("result" or "error") is a result. Later steps
default to the newest output of the step before: predict to the latest checkpoint of the
newest train run, segment to the newest succeeded predict run, evaluate to the newest
succeeded segment run. Every refusal is an InputError that names what does exist.

This module is light (no torch): the CLI resolves lineage itself for `--local` runs.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import contract
from engine.contract import (
    CHECKPOINT_PATTERN,
    CHECKPOINTS,
    EVENTS_FILE,
    RUN_FILE,
    read_best,
    read_events,
    read_events_of,
)
from engine.errors import InputError
from engine.train.validation import RECORD_KEYS, VALIDATION_ATTR

_RUN_ITER = re.compile(r"(?P<run>[^:/]+):(?P<iteration>\d+|best)")
# How each kind names the run it builds on in its inputs.
PARENT_KEY = {"predict": "train_run", "segment": "predict_run", "evaluate": "segment_run"}
# The command that makes a run of each kind, for "do this first" hints.
_MAKE = {
    "train": "lsdctl train --project {p}",
    "predict": "lsdctl predict --project {p}",
    "segment": "lsdctl segment --project {p}",
    "evaluate": "lsdctl evaluate --project {p}",
}
# What an evaluate run writes (engine.evaluate.evaluation), read back by the CLI.
METRICS_FILE = "metrics.json"
_SEGMENTATION = re.compile(r"segmentation_(\d+(?:\.\d+)?)")
PLOT_FILE = "scores.png"
# At most this many run ids in one message.
_NAMED = 5


@dataclass(frozen=True)
class RunRecord:
    """One run folder as found on disk."""

    id: str
    kind: str
    dir: Path
    created: str
    """ISO time from run.toml (the folder's mtime if run.toml has none)."""
    succeeded: bool
    error: str | None = None
    """The last error message when the run's last terminal event is an error."""
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """succeeded, failed (its last terminal event is an error) or unfinished."""
        if self.succeeded:
            return "succeeded"
        return "failed" if self.error is not None else "unfinished"

    @property
    def parent(self) -> str | None:
        """What the run built on: a train run id (predict) or a run folder (segment, evaluate)."""
        key = PARENT_KEY.get(self.kind)
        value = self.inputs.get(key) if key else None
        return str(value) if value else None


@dataclass(frozen=True)
class CheckpointChoice:
    """A checkpoint to predict with, and where it came from."""

    path: Path
    train_run: str | None
    """The id of the train run of this project holding it; None for an outside file."""
    iteration: int | None
    note: str | None = None
    """Something the user should hear about the choice (e.g. an unfinished run's)."""
    validation: dict[str, Any] | None = None
    """What validation during training chose with this checkpoint (threshold, scores)."""


def is_dir(path: Path) -> bool:
    """Path.is_dir for names users typed: one too long for the OS counts as absent too."""
    try:
        return path.is_dir()
    except OSError:
        return False


def is_file(path: Path) -> bool:
    """Path.is_file, with names the OS refuses counting as absent (see is_dir)."""
    try:
        return path.is_file()
    except OSError:
        return False


# ---- runs ------------------------------------------------------------------------------
def list_runs(project_path: Path, kind: str | None = None) -> list[RunRecord]:
    """Every run of the project (of `kind` if given), oldest first.

    Folders without a readable run.toml are skipped: they are being created, or are not
    runs at all.
    """
    runs_dir = Path(project_path) / "runs"
    if not runs_dir.is_dir():
        return []
    records = []
    for folder in runs_dir.iterdir():
        record = read_run(folder)
        if record is not None and (kind is None or record.kind == kind):
            records.append(record)
    return sorted(records, key=lambda r: (r.created, r.id))


def read_run(run_dir: Path) -> RunRecord | None:
    """The record of one run folder; None when it has no readable run.toml."""
    try:
        with (run_dir / RUN_FILE).open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    # Only the header: validating the whole config would cost time and would reject runs
    # made by an older config schema, which still have usable outputs.
    kind = data.get("kind")
    if not isinstance(kind, str):
        return None
    inputs = data.get("inputs")
    succeeded, error = _outcome(run_dir / EVENTS_FILE)
    return RunRecord(
        id=str(data.get("id") or run_dir.name),
        kind=kind,
        dir=run_dir.absolute(),
        created=str(data.get("created") or _mtime(run_dir)),
        succeeded=succeeded,
        error=error,
        inputs=inputs if isinstance(inputs, dict) else {},
    )


def latest_succeeded(project_path: Path, kind: str) -> RunRecord | None:
    """The newest run of `kind` that succeeded, if any."""
    return next((r for r in reversed(list_runs(project_path, kind)) if r.succeeded), None)


def result_event(run_dir: Path) -> dict[str, Any] | None:
    """The run's last result event (None if it has none)."""
    events, _ = read_events(run_dir / EVENTS_FILE)
    return next((e for e in reversed(events) if e.get("type") == "result"), None)


def run_outputs(run_dir: Path, folder: str) -> list[Path]:
    """The zarr containers a run wrote: its result event's `outputs`, else `folder/*.zarr`."""
    result = result_event(run_dir)
    listed = result.get("outputs") if result else None
    if isinstance(listed, list) and listed:
        return [Path(str(p)) for p in listed if is_dir(Path(str(p)))]
    where = run_dir / folder
    if not where.is_dir():
        return []
    return sorted(p for p in where.glob("*.zarr") if p.is_dir())


def headline(metrics: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(the scores to report, what chose their threshold, the oracle row) of an evaluate
    run's metrics.json. Files written before validation existed hold only `best`, the
    best on the scored labels: chosen on "test"."""
    oracle = metrics.get("oracle") or metrics["best"]
    found = metrics.get("headline")
    if found is None:
        return dict(oracle), "test", dict(oracle)
    return dict(found), str(metrics.get("chosen_on") or "test"), dict(oracle)


def _attrs(container: Path) -> dict[str, Any]:
    try:
        attrs = json.loads((container / ".zattrs").read_text())
    except (OSError, ValueError):
        return {}
    return attrs if isinstance(attrs, dict) else {}


def validation_of_output(container: Path) -> dict[str, Any] | None:
    """The validation record a prediction or segmentation zarr carries (its checkpoint's
    threshold chosen on validation), read without zarr; None if it has none."""
    found = _attrs(container).get(VALIDATION_ATTR)
    return found if isinstance(found, dict) and "threshold" in found else None


def source_volume(container: Path) -> Path | None:
    """The `source_volume` attribute of a prediction or segmentation zarr (None if absent).

    Read from `.zattrs` directly, so that the CLI can check lineage without zarr.
    """
    value = _attrs(container).get("source_volume")
    return Path(str(value)) if value else None


def ground_truth_of(segmentation: Path) -> Path:
    """The source volume of a segmentation zarr, which must hold `labels` to score against."""
    source = source_volume(segmentation)
    if source is None:
        raise InputError(
            f"{segmentation} does not name its source volume (zarr attribute source_volume): "
            "cannot find its ground truth"
        )
    if not (source / "labels").is_dir():
        raise InputError(
            f"volume {source} has no labels: evaluation needs ground truth (import the volume "
            "with its labels)"
        )
    return source


def _outcome(events_path: Path) -> tuple[bool, str | None]:
    """(succeeded, last error message) from the run's terminal events."""
    try:
        terminal = read_events_of(events_path, "result", "error")
    except OSError:
        return False, None
    if not terminal:
        return False, None
    last = terminal[-1]
    if last["type"] == "result":
        return True, None
    # Messages end up in one-line refusals: no tracebacks or newlines in them.
    message = " ".join(str(last.get("message") or "error").split())
    return False, message if len(message) <= 200 else message[:199] + "…"


def _mtime(path: Path) -> str:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = 0.0
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _ids(records: list[RunRecord]) -> str:
    """`a (succeeded), b (failed)`: the newest few, for messages."""
    newest = list(reversed(records))[:_NAMED]
    text = ", ".join(f"{r.id} ({r.status})" for r in newest)
    more = len(records) - len(newest)
    return text + (f" and {more} older" if more > 0 else "")


def _find_run(project_path: Path, spec: str, kind: str) -> RunRecord:
    """The run `spec` names (a run id of the project, or a run folder), which must be `kind`."""
    project_path = Path(project_path)
    project = project_path.name
    candidate = Path(spec)
    if "/" in spec:
        run_dir = candidate if candidate.is_absolute() else Path.cwd() / candidate
    else:
        run_dir = project_path / "runs" / spec
    record = read_run(run_dir) if is_dir(run_dir) else None
    if record is None:
        others = list_runs(project_path, kind)
        listed = f"its {kind} runs: {_ids(others)}" if others else f"it has no {kind} runs"
        raise InputError(f"no run {spec!r} in project {project}: {listed}")
    if record.kind != kind:
        raise InputError(f"run {record.id} is a {record.kind} run, not a {kind} run")
    return record


# ---- checkpoints -------------------------------------------------------------------------
def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint of a train run, oldest first."""
    return [(i, path.absolute()) for i, path in contract.list_checkpoints(run_dir / CHECKPOINTS)]


def resolve_checkpoint(project_path: Path, spec: str | None) -> CheckpointChoice:
    """The checkpoint `spec` names.

    None: of the newest succeeded train run that has a checkpoint (else the newest train
    run with any; the note says so), its best checkpoint on validation when it validated,
    else its latest. "RUN_ID": that train run's latest checkpoint. "RUN_ID:ITER": its
    checkpoint at iteration ITER. "RUN_ID:best": its best checkpoint on validation. A path
    to a `.pt` file (absolute, or relative to the working directory or the project): that
    file. The choice carries the validation record of its iteration, if there is one.
    """
    project_path = Path(project_path)
    project = project_path.name
    if spec is None or not spec.strip():
        return _default_checkpoint(project_path)
    spec = spec.strip()
    if spec.endswith(".pt") or "/" in spec:
        return _checkpoint_file(project_path, spec)
    match = _RUN_ITER.fullmatch(spec)
    run_id = match.group("run") if match else spec
    record = _find_run(project_path, run_id, "train")
    found = list_checkpoints(record.dir)
    if not found:
        raise InputError(
            f"train run {record.id} ({record.status}) has no checkpoint yet in project "
            f"{project}: pick another run, or wait for its first checkpoint"
        )
    if match is None:
        iteration, path = found[-1]
        return _choice(record, iteration, path)
    if match.group("iteration") == "best":
        return _best_checkpoint(record, found)
    wanted = int(match.group("iteration"))
    for iteration, path in found:
        if iteration == wanted:
            return _choice(record, iteration, path)
    have = ", ".join(str(i) for i, _ in found)
    raise InputError(
        f"train run {record.id} has no checkpoint at iteration {wanted}: it has {have}"
    )


def _default_checkpoint(project_path: Path) -> CheckpointChoice:
    runs = list_runs(project_path, "train")
    with_checkpoint = [(r, c[-1]) for r in runs if (c := list_checkpoints(r.dir))]
    if not with_checkpoint:
        project = project_path.name
        also = f" (train runs without one: {_ids(runs)})" if runs else ""
        raise InputError(
            f"no checkpoint in project {project}: train first "
            f"({_MAKE['train'].format(p=project)}){also}"
        )
    succeeded = [(r, c) for r, c in with_checkpoint if r.succeeded]
    record, (iteration, path) = (succeeded or with_checkpoint)[-1]
    if read_best(record.dir) is not None:
        choice = _best_checkpoint(record, list_checkpoints(record.dir))
        said = (
            f"the best checkpoint on validation of train run {record.id}: iteration "
            f"{choice.iteration}, VOI {_number(choice.validation, 'voi')} at threshold "
            f"{_number(choice.validation, 'threshold', 2)}"
        )
        return CheckpointChoice(
            choice.path,
            choice.train_run,
            choice.iteration,
            f"{said}; {choice.note}" if choice.note else said,
            choice.validation,
        )
    return _choice(record, iteration, path)


def _choice(record: RunRecord, iteration: int, path: Path) -> CheckpointChoice:
    return CheckpointChoice(
        path,
        record.id,
        iteration,
        _unfinished_note(record, iteration),
        validation_at(record.dir, iteration),
    )


def _number(record: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    value = (record or {}).get(key)
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "?"


def _best_checkpoint(record: RunRecord, found: list[tuple[int, Path]]) -> CheckpointChoice:
    """RUN_ID:best: the checkpoint best.json names, which must still exist."""
    best = read_best(record.dir)
    if best is None:
        raise InputError(
            f"train run {record.id} has no validation results, so no best checkpoint: give "
            f"{record.id} (its latest) or {record.id}:ITERATION, or train with val/ volumes and "
            "train.validate_every set"
        )
    iteration = int(best["iteration"])
    path = next((p for i, p in found if i == iteration), None)
    if path is None:
        raise InputError(
            f"the best checkpoint of train run {record.id} (iteration {iteration}) is missing "
            f"from {record.dir / CHECKPOINTS}: give {record.id}:ITERATION for another one"
        )
    return CheckpointChoice(
        path, record.id, iteration, _unfinished_note(record, iteration), _validation(best)
    )


def _validation(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in RECORD_KEYS}


def validation_at(run_dir: Path, iteration: int) -> dict[str, Any] | None:
    """The validation point of a train run at `iteration` (the newest report of it), if
    the run validated there: its threshold and scores travel with that checkpoint."""
    best = read_best(run_dir)
    if best is not None and best.get("iteration") == iteration:
        return _validation(best)
    try:
        events = read_events_of(run_dir / EVENTS_FILE, "validation")
    except OSError:
        return None
    found = None
    for event in events:
        if event.get("step") == iteration and isinstance(event.get("threshold"), int | float):
            found = _validation(event)
    return found


def validation_of_checkpoint(path: Path) -> dict[str, Any] | None:
    """The validation record of a checkpoint file inside a train run (None otherwise),
    with `train_run` and `iteration` added."""
    match = CHECKPOINT_PATTERN.fullmatch(path.name)
    if match is None or path.parent.name != CHECKPOINTS:
        return None
    run_dir = path.parent.parent
    iteration = int(match.group(1))
    found = validation_at(run_dir, iteration)
    if found is None:
        return None
    return {**found, "train_run": run_dir.name, "iteration": iteration}


def _unfinished_note(record: RunRecord, iteration: int) -> str | None:
    if record.succeeded:
        return None
    return (
        f"train run {record.id} has not succeeded ({record.status}); using its checkpoint "
        f"at iteration {iteration}"
    )


def _checkpoint_file(project_path: Path, spec: str) -> CheckpointChoice:
    given = Path(spec).expanduser()
    tries = [given] if given.is_absolute() else [Path.cwd() / given, project_path / given]
    path = next((p for p in tries if is_file(p)), None)
    if path is None:
        raise InputError(
            f"checkpoint file {spec} does not exist; give RUN_ID, RUN_ID:ITERATION, RUN_ID:best "
            "or the path of a .pt file"
        )
    path = path.resolve()
    match = CHECKPOINT_PATTERN.fullmatch(path.name)
    iteration = int(match.group(1)) if match else None
    train_run = None
    runs_dir = (project_path / "runs").resolve()
    # A file inside one of the project's train runs keeps its lineage.
    if path.parent.name == CHECKPOINTS and path.parent.parent.parent == runs_dir:
        record = read_run(path.parent.parent)
        if record is not None and record.kind == "train":
            train_run = record.id
    return CheckpointChoice(path, train_run, iteration, validation=validation_of_checkpoint(path))


# ---- parents of segment and evaluate ---------------------------------------------------
def resolve_parent(project_path: Path, kind_wanted: str, spec: str | None) -> RunRecord:
    """The succeeded run of `kind_wanted` that a later step builds on.

    `spec` is a run id of the project or a run folder; None picks the newest succeeded
    run of that kind. A run that has not succeeded is refused, naming those that have.
    """
    project_path = Path(project_path)
    project = project_path.name
    if spec is None or not spec.strip():
        record = latest_succeeded(project_path, kind_wanted)
        if record is not None:
            return record
        runs = list_runs(project_path, kind_wanted)
        also = f" (its {kind_wanted} runs: {_ids(runs)})" if runs else ""
        raise InputError(
            f"no succeeded {kind_wanted} run in project {project}: run "
            f"`{_MAKE[kind_wanted].format(p=project)}` first{also}"
        )
    record = _find_run(project_path, spec.strip(), kind_wanted)
    if not record.succeeded:
        why = f": {record.error}" if record.error else ""
        done = [r for r in list_runs(project_path, kind_wanted) if r.succeeded]
        pick = f"; succeeded ones: {_ids(done)}" if done else ""
        raise InputError(
            f"{kind_wanted} run {record.id} has not succeeded ({record.status}{why}){pick}"
        )
    return record


def segmentation_datasets(container: Path) -> list[tuple[float, str]]:
    """(threshold, dataset name) of each `segmentation_<t>` array in `container`, ascending."""
    found = []
    for child in container.iterdir():
        match = _SEGMENTATION.fullmatch(child.name)
        if match and (child / ".zarray").is_file():
            found.append((float(match.group(1)), child.name))
    return sorted(found)
