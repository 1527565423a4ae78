"""The daemon's wire models: what crosses the socket, in both directions.

Pydantic only (no FastAPI, no sqlmodel), so the CLI can import it and stay light.
Times are timezone-aware UTC datetimes on the wire.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

# The kinds of run are the run directory's contract (the engine's entry points).
from engine.contract import RunKind as RunKind


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(_Wire):
    """POST /v1/runs: what to run, with which changes to the project's config."""

    kind: RunKind
    project: str = Field(
        min_length=1,
        max_length=4096,
        description="Project folder (absolute), or a project name under the daemon's "
        "projects root.",
    )
    preset: str | None = Field(
        None,
        max_length=4096,
        description="Rebase the project's config on this dataset preset first (--dataset).",
    )
    overrides: dict[str, JsonValue] = Field(
        default_factory=dict, description="Dotted config keys and their values."
    )
    inputs: dict[str, JsonValue] = Field(
        default_factory=dict, description="Checkpoint, volumes, parent run: per kind."
    )
    gpus: int = Field(0, ge=0, le=64, description="GPUs to reserve (the CPU if none exist).")
    require_gpu: bool = Field(False, description="Wait for a GPU rather than use the CPU.")
    share_gpu: bool = Field(False, description="May share its GPUs with other sharing runs.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first; FIFO within.")
    after: list[str] = Field(
        default_factory=list, max_length=100, description="Runs that must succeed first."
    )
    hold: bool = Field(False, description="Stay queued until released.")
    iterations: int | None = Field(None, ge=1, le=10**9, description="train: total iterations.")
    workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Worker processes (blockwise runs; default: the project's "
        "predict.num_workers).",
    )
    parent: str | None = Field(None, max_length=200, description="The run this one builds on.")


class ResumeRequest(_Wire):
    iterations: int | None = Field(None, ge=1, le=10**9, description="train: new total.")


class VolumeScores(_Wire):
    """One validation volume's scores at the point's threshold."""

    voi_split: float | None = None
    voi_merge: float | None = None
    voi: float | None = None
    arand: float | None = None
    voxels: int | None = Field(None, description="Voxels scored (labelled, unmasked).")


class ValidationPoint(_Wire):
    """One validation of a training run: the scores over all validation volumes at the
    threshold with the lowest VOI. Missing and NaN scores are null."""

    step: int = Field(description="The training iteration validated.")
    attempt: int = Field(description="The attempt that reported it (the latest wins).")
    voi_split: float | None
    voi_merge: float | None
    voi: float | None = Field(description="voi_split + voi_merge; lower is better.")
    arand: float | None = Field(description="Adapted Rand error; lower is better.")
    threshold: float | None = Field(description="The agglomeration threshold scored.")
    seconds: float | None = Field(description="How long the validation took.")
    best: bool = Field(description="The run's lowest VOI so far (the earliest on ties).")
    volumes: dict[str, VolumeScores] = Field(description="The scores of each volume.")
    t: float | None = Field(description="Unix time of the event.")


class RunInfo(_Wire):
    """One run, as lists show it; cheap to produce (no config, no metrics)."""

    id: str
    project: str
    project_path: str
    kind: str
    state: RunState
    reason: str | None = Field(None, description="Why it waits, or why it stopped.")
    priority: int
    hold: bool
    created: datetime
    started: datetime | None
    finished: datetime | None
    attempts: int
    exit_code: int | None
    error: str | None
    gpus: list[int] = Field(description="GPU indices reserved now (or last).")
    gpus_requested: int
    pid: int | None
    progress_done: int | None
    progress_total: int | None
    latest_loss: float | None
    latest_step: int | None
    eta_s: float | None
    rate: float | None = Field(
        None, description="Progress units (iterations, blocks) per second, when known."
    )
    parent: str | None
    after: list[str]
    run_dir: str
    best_validation: ValidationPoint | None = Field(
        None, description="The validation point with the lowest VOI (train runs)."
    )


class Attempt(_Wire):
    number: int
    pid: int | None
    started: datetime
    finished: datetime | None
    exit_code: int | None
    gpus: list[int]
    iterations: int | None


class MetricPoint(_Wire):
    name: str
    step: int
    value: float | None
    attempt: int
    t: float | None


class RunDetail(RunInfo):
    """GET /v1/runs/{id}: the run with its config, attempts and latest metrics."""

    config: dict[str, Any]
    inputs: dict[str, Any]
    overrides: dict[str, Any]
    history: list[Attempt]
    latest_metrics: list[MetricPoint]
    last_checkpoint: str | None
    result: dict[str, Any] | None
    validation: list[ValidationPoint] = Field(
        default_factory=list, description="Every validation point, in step order."
    )


class Metrics(_Wire):
    run: str
    points: list[MetricPoint]


class Validation(_Wire):
    """GET /v1/runs/{id}/validation: the run's validation points, in step order."""

    run: str
    points: list[ValidationPoint]


class LogChunk(_Wire):
    run: str
    offset: int
    next_offset: int
    text: str
    finished: bool = Field(description="The run is over: no more text will come.")


class BlockState(_Wire):
    """One block that has been started at least once (the others are pending)."""

    index: int = Field(description="Row-major index over the task's grid.")
    grid: list[int] = Field(description="Position in the grid, z first.")
    status: str = Field(
        description="running, done, skipped (no masked voxel: nothing computed) or failed "
        "(the latest event)."
    )
    worker: str | None
    t: float | None = Field(description="Unix time of the latest event.")
    seconds: float | None = Field(
        None, description="How long the block took (done or skipped only)."
    )
    error: str | None = Field(None, description="The traceback of its last failure.")


class BlockTask(_Wire):
    """One blockwise task of a run and its grid: predict-VOL, fragments-VOL, …"""

    task: str
    shape: list[int] = Field(description="Blocks per axis, z first.")
    total: int
    block: list[int] = Field(description="Block shape in voxels.")
    offset: list[int]
    counts: dict[str, int] = Field(description="Blocks by status, pending included.")
    blocks: list[BlockState]


class BlockMap(_Wire):
    """GET /v1/runs/{id}/blocks: every task's grid with the state of each started block."""

    run: str
    tasks: list[BlockTask]


class CheckpointInfo(_Wire):
    iteration: int
    path: str
    size_bytes: int
    modified: datetime
    best: bool = Field(
        False, description="The checkpoint of the best validation (checkpoints/best.json)."
    )


class Checkpoints(_Wire):
    """GET /v1/runs/{id}/checkpoints: the checkpoints in the run directory, oldest first."""

    run: str
    checkpoints: list[CheckpointInfo]


class Health(_Wire):
    pid: int
    version: str
    started: datetime
    uptime_s: float
    socket: str
    home: str
    runs: dict[str, int] = Field(description="Runs by state.")


class GpuProcess(_Wire):
    pid: int
    used_memory_mb: float | None


class GpuInfo(_Wire):
    index: int
    name: str
    memory_total_mb: float
    memory_used_mb: float
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    processes: list[GpuProcess]
    held_by: list[str] = Field(description="Runs holding a reservation on this GPU.")


class GpuReport(_Wire):
    available: bool
    reason: str | None
    gpus: list[GpuInfo]


class ErrorBody(_Wire):
    detail: str = Field(description="One line: what is wrong and what to do.")
    code: str = Field(description="run_not_found, project_not_found, invalid, conflict, …")
