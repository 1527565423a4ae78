"""The run directory's contract between whoever starts a run (the daemon, `--local` CLI
commands) and the engine that runs it, written down once for both sides.

`RUN_DIR/` holds `run.toml` (what to run, written once), `events.jsonl` (what the run
reports, one JSON object a line, flushed per line), `log.txt` (the process's stdout and
stderr) and `checkpoints/checkpoint_00001000.pt` with `checkpoints/best.json` beside them.
Run ids read `KIND-YYYYMMDD-HHMMSS-xxxx` (UTC, 4 hex digits), so they sort by time.

This module imports only the standard library and pydantic: the daemon imports it and
nothing else of the engine (.importlinter), so it must not pull in torch, numpy or any
other engine module.

Events: every line is an object with `type` and `t` (Unix time, seconds). One pydantic
model per type below; all allow fields they do not name, so a newer engine's extra fields
reach an older reader unharmed. `parse_event` returns None for a type this module does
not know (a newer engine's), and readers skip a last line without its newline (still
being written, or torn by a crash).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# Run-directory file names.
RUN_FILE = "run.toml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
CHECKPOINTS = "checkpoints"
# CHECKPOINTS/best.json: the checkpoint with the best validation VOI so far (kept whatever
# train.keep_checkpoints says) and the threshold chosen with it, written by engine.train:
# {"iteration", "path", "step", "threshold", "voi_split", "voi_merge", "voi", "arand"}.
BEST_FILE = "best.json"


# Run ids.
RUN_ID_PATTERN = re.compile(r"(?P<kind>[a-z]+)-(?P<stamp>\d{8}-\d{6})-(?P<suffix>[0-9a-f]{4})")


def new_run_id(kind: str) -> str:
    """Sortable by time, unique without coordination: `train-20261126-114502-3f9a`.

    Four random hex digits can collide within one second: a caller that keeps a registry
    (the daemon) draws again while the id is taken.
    """
    return f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def is_run_id(text: str) -> bool:
    """True when `text` has the form `new_run_id` gives."""
    return RUN_ID_PATTERN.fullmatch(text) is not None


# Checkpoint names. At least 8 digits: what `checkpoint_name` writes for any iteration,
# so every name it gives is parsed back (also past 99,999,999 iterations).
CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d{8,})\.pt")


def checkpoint_name(iteration: int) -> str:
    """The file name of the checkpoint of `iteration`: `checkpoint_00001000.pt`."""
    return f"checkpoint_{iteration:08d}.pt"


def checkpoint_iteration(name: str) -> int | None:
    """The iteration a checkpoint file name stands for, or None for any other file
    (temporary files of a checkpoint being written included)."""
    match = CHECKPOINT_PATTERN.fullmatch(name)
    return None if match is None else int(match.group(1))


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every complete checkpoint in `folder`, oldest first ([] for a
    folder that is missing or unreadable)."""
    try:
        paths = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for path in paths:
        iteration = checkpoint_iteration(path.name)
        if iteration is not None:
            found.append((iteration, path))
    return sorted(found)


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """A train run's CHECKPOINTS/BEST_FILE (None when it has none, or an unreadable one)."""
    try:
        data = json.loads((run_dir / CHECKPOINTS / BEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("iteration"), int):
        return None
    return data


# The event schema.
class BaseEvent(BaseModel):
    """What every event has: its `type` (each subclass fixes it) and `t`."""

    model_config = ConfigDict(extra="allow")

    type: str
    t: float | None = Field(None, description="Unix time the event was written, in seconds.")


class MetricEvent(BaseEvent):
    """A training scalar (loss, iterations_per_s, data_wait, learning_rate) at a step."""

    type: Literal["metric"] = "metric"
    step: int
    name: str
    value: float | None = Field(None, description="None for a non-finite value (JSON has no NaN).")


class ProgressEvent(BaseEvent):
    """Units of work done out of total: iterations (train) or blocks (blockwise runs)."""

    type: Literal["progress"] = "progress"
    done: int
    total: int
    task: str | None = Field(None, description="Blockwise runs: the daisy task ids, joined by ','.")
    failed: int | None = None


class BlockEvent(BaseEvent):
    """A blockwise block changed state (running, done, skipped, failed)."""

    type: Literal["block"] = "block"
    id: str = Field(description="`TASK:INDEX`, INDEX the block's row-major number in its grid.")
    status: str
    task: str | None = None
    grid: list[int] | None = Field(None, description="The block's position in its task's grid.")
    worker: int | str | None = None
    error: str | None = None
    seconds: float | None = None


class BlockGridEvent(BaseEvent):
    """The grid of one blockwise task, sent before its first block."""

    type: Literal["blockgrid"] = "blockgrid"
    task: str
    shape: list[int]
    total: int
    block: list[int] = Field(default_factory=list, description="Block size in nm.")
    offset: list[int] = Field(default_factory=list, description="Grid offset in nm.")


class WorkerEvent(BaseEvent):
    """A blockwise worker started or stopped."""

    type: Literal["worker"] = "worker"
    task: str
    worker: int | str | None = None
    status: str | None = None


class CheckpointEvent(BaseEvent):
    """A checkpoint was written (and fsynced) at `path`."""

    type: Literal["checkpoint"] = "checkpoint"
    iteration: int
    path: str
    best: bool = False


class ValidationEvent(BaseEvent):
    """Scores of the weights of `step` on the validation volumes (None: not computed)."""

    type: Literal["validation"] = "validation"
    step: int
    voi_split: float | None = None
    voi_merge: float | None = None
    voi: float | None = None
    arand: float | None = None
    threshold: float | None = None
    volumes: dict[str, Any] = Field(default_factory=dict, description="Each volume's scores.")
    seconds: float | None = None
    best: bool = False


class ResultEvent(BaseEvent):
    """A run finished; its fields are the kind's summary (all of them extra fields)."""

    type: Literal["result"] = "result"


class ErrorEvent(BaseEvent):
    """The run failed with `message`."""

    type: Literal["error"] = "error"
    message: str


class InterruptedEvent(BaseEvent):
    """The run stopped on a signal; resuming it continues from what it kept."""

    type: Literal["interrupted"] = "interrupted"
    message: str


class WarningEvent(BaseEvent):
    """Something the user should know that does not stop the run."""

    type: Literal["warning"] = "warning"
    message: str


class ResumedEvent(BaseEvent):
    """Training continues from the checkpoint at `path`."""

    type: Literal["resumed"] = "resumed"
    iteration: int
    path: str


class InitializedEvent(BaseEvent):
    """Training starts from the weights of another checkpoint (`--init-from`)."""

    type: Literal["initialized"] = "initialized"
    path: str
    iteration: int | None = None


class SnapshotEvent(BaseEvent):
    """A training batch with its predictions was saved at `path` (a zarr container)."""

    type: Literal["snapshot"] = "snapshot"
    iteration: int
    path: str


Event = Annotated[
    MetricEvent
    | ProgressEvent
    | BlockEvent
    | BlockGridEvent
    | WorkerEvent
    | CheckpointEvent
    | ValidationEvent
    | ResultEvent
    | ErrorEvent
    | InterruptedEvent
    | WarningEvent
    | ResumedEvent
    | InitializedEvent
    | SnapshotEvent,
    Field(discriminator="type"),
]
# The type names the union above tells apart (the models' `type` defaults).
EVENT_TYPES: frozenset[str] = frozenset(
    model.model_fields["type"].default for model in get_args(get_args(Event)[0])
)
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: dict[str, Any]) -> Event | None:
    """The typed event of one decoded line; None for a type this reader does not know.

    A known type with missing or ill-typed fields raises pydantic's ValidationError (a
    ValueError): the reader decides whether to skip it.
    """
    if raw.get("type") not in EVENT_TYPES:
        return None
    return _EVENT.validate_python(raw)


# Writing and reading events.jsonl.
class EventWriter:
    """Appends events; every line is flushed, and with `durable` the file is fsynced too
    (checkpoints, results and errors: what must survive a crash of the machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", buffering=1)

    def emit(self, type_: str, durable: bool = False, **fields: Any) -> None:
        """Append an event of `type_` with `fields` (those its model above declares; the
        engine's writers call this, numpy and torch scalars allowed)."""
        self._append({"t": round(time.time(), 3), "type": type_, **fields}, durable)

    def write(self, event: BaseEvent, durable: bool = False) -> None:
        """Append a typed event: the fields it was given, `t` now unless it carries one."""
        fields = event.model_dump(exclude={"t", "type"}, exclude_unset=True)
        t = round(time.time(), 3) if event.t is None else event.t
        self._append({"t": t, "type": event.type, **fields}, durable)

    def _append(self, event: dict[str, Any], durable: bool) -> None:
        self._file.write(json.dumps(event, default=_plain) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def metric(self, step: int, name: str, value: float) -> None:
        self.emit("metric", step=step, name=name, value=value if math.isfinite(value) else None)

    def close(self) -> None:
        self._file.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars, without importing either
        return value.item()
    return str(value)


def read_events(
    path: Path, offset: int = 0, limit: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte `offset` on (at most about `limit` bytes when given) and
    the offset to continue from.

    A last line without its newline is not consumed: it is either still being written
    or the remains of a crash, and is read again (or skipped) next time. A line that is
    not a JSON object (a torn line followed by newer ones) is skipped.
    """
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        return [], offset
    events: list[dict[str, Any]] = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn line from a crash, followed by newer complete lines
        if isinstance(event, dict):
            events.append(event)
    return events, offset + end


def read_events_of(path: Path, *kinds: str) -> list[dict[str, Any]]:
    """Every complete event of the given types, in order: a long training log is mostly
    metric lines, so only lines that mention one of the types are parsed."""
    needles = [f'"{kind}"'.encode() for kind in kinds]
    found: list[dict[str, Any]] = []
    try:
        with path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n") or not any(n in line for n in needles):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a torn line from a crash
                if isinstance(event, dict) and event.get("type") in kinds:
                    found.append(event)
    except FileNotFoundError:
        return []
    return found
