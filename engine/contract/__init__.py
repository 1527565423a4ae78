"""The run directory's contract between whoever starts a run (the daemon, `--local` CLI
commands) and the engine that runs it, written down once for both sides: `files` (names,
run ids, checkpoint names), `events` (the event schema, its writer and readers) and
`requests` (what a run asks the resolver for, and the run it resolves to).

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

from engine.contract.events import (
    EVENT_TYPES,
    BaseEvent,
    BlockEvent,
    BlockGridEvent,
    CheckpointEvent,
    ErrorEvent,
    Event,
    EventWriter,
    InitializedEvent,
    InterruptedEvent,
    MetricEvent,
    ProgressEvent,
    ResultEvent,
    ResumedEvent,
    SnapshotEvent,
    ValidationEvent,
    WarningEvent,
    WorkerEvent,
    parse_event,
    read_events,
    read_events_of,
)
from engine.contract.files import (
    BEST_FILE,
    CHECKPOINT_PATTERN,
    CHECKPOINTS,
    EVENTS_FILE,
    LOG_FILE,
    RUN_FILE,
    RUN_ID_PATTERN,
    checkpoint_iteration,
    checkpoint_name,
    is_run_id,
    list_checkpoints,
    new_run_id,
    read_best,
)
from engine.contract.requests import (
    OPS,
    Executor,
    ProjectRef,
    Refused,
    ResolvedRun,
    Resources,
    ResourcesAsked,
    RunKind,
    RunRequest,
    WriteRequest,
    Written,
    parse_answer,
)

__all__ = [
    "BEST_FILE",
    "CHECKPOINTS",
    "CHECKPOINT_PATTERN",
    "EVENTS_FILE",
    "EVENT_TYPES",
    "LOG_FILE",
    "OPS",
    "RUN_FILE",
    "RUN_ID_PATTERN",
    "BaseEvent",
    "BlockEvent",
    "BlockGridEvent",
    "CheckpointEvent",
    "ErrorEvent",
    "Event",
    "EventWriter",
    "Executor",
    "InitializedEvent",
    "InterruptedEvent",
    "MetricEvent",
    "ProgressEvent",
    "ProjectRef",
    "Refused",
    "ResolvedRun",
    "Resources",
    "ResourcesAsked",
    "ResultEvent",
    "ResumedEvent",
    "RunKind",
    "RunRequest",
    "SnapshotEvent",
    "ValidationEvent",
    "WarningEvent",
    "WorkerEvent",
    "WriteRequest",
    "Written",
    "checkpoint_iteration",
    "checkpoint_name",
    "is_run_id",
    "list_checkpoints",
    "new_run_id",
    "parse_answer",
    "parse_event",
    "read_best",
    "read_events",
    "read_events_of",
]
