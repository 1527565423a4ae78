"""`events.jsonl`: the event schema (one pydantic model per type), its writer and readers."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import IO, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


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


# The test suite sets it, so that every event any part of the engine writes in any test is
# read back by its model at once: a writer and the model it must match cannot drift apart.
CHECK_EVENTS_ENV = "LSDCTL_CHECK_EVENTS"


# Writing and reading events.jsonl.
class EventWriter:
    """Appends events; every line is flushed, and with `durable` the file is fsynced too
    (checkpoints, results and errors: what must survive a crash of the machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", buffering=1)
        self._check = bool(os.environ.get(CHECK_EVENTS_ENV))

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
        line = json.dumps(event, default=_plain)
        if self._check:
            _check(line)
        self._file.write(line + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def metric(self, step: int, name: str, value: float) -> None:
        self.emit("metric", step=step, name=name, value=value if math.isfinite(value) else None)

    def close(self) -> None:
        self._file.close()


def _check(line: str) -> None:
    raw = json.loads(line)
    try:
        known = parse_event(raw) is not None
    except ValueError as exc:
        raise ValueError(f"event {line[:300]} does not match its model: {exc}") from exc
    if not known:
        raise ValueError(f"event {line[:300]} has a type no model declares")


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
