"""The SQLite tables (sqlmodel). Times are Unix seconds (floats); the API converts them.

Runs carry denormalised progress (latest loss, step, done/total, rate) and their best
validation point updated as events arrive, so listing runs never scans the metric or
validation tables.
"""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 3


class SchemaVersionRow(SQLModel, table=True):
    __tablename__ = "schema_version"

    version: int = Field(primary_key=True)
    applied: float


class ProjectRow(SQLModel, table=True):
    __tablename__ = "project"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    path: str = Field(unique=True)
    created: float


class RunRow(SQLModel, table=True):
    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_state_seq", "state", "seq"),
        Index("ix_run_project_seq", "project_id", "seq"),
        Index("ix_run_kind_seq", "kind", "seq"),
    )

    # Insertion order: FIFO within a priority, and newest-first listings, both by index.
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    project_id: int = Field(foreign_key="project.id")
    kind: str
    state: str
    reason: str | None = None
    priority: int = 0
    hold: bool = False
    gpus_requested: int = 0
    require_gpu: bool = False
    share_gpu: bool = False
    workers: int = 1
    iterations: int | None = None  # for the next launch (train: total iterations)
    run_dir: str
    parent: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    pid: int | None = None
    gpus: str = ""  # comma-separated GPU indices of the current (or last) attempt
    pid_start: int | None = None  # /proc/PID/stat field 22: tells a reused pid apart
    exit_code: int | None = None
    error: str | None = None
    cancel_requested: float | None = None
    events_offset: int = 0  # bytes of events.jsonl already in SQLite
    progress_done: int | None = None
    progress_total: int | None = None
    latest_loss: float | None = None
    latest_step: int | None = None
    rate: float | None = None  # progress units per second, for the ETA
    progress_t0: float | None = None  # first progress event of this attempt (time, done)
    progress_done0: int | None = None
    last_checkpoint: str | None = None
    result_json: str | None = None
    # Schema 3: the validation point with the lowest VOI (the earliest step on ties).
    best_step: int | None = None
    best_voi: float | None = None
    best_threshold: float | None = None


class RunConfigRow(SQLModel, table=True):
    """The resolved config: big, so kept apart from the rows that lists read."""

    __tablename__ = "run_config"

    run_seq: int = Field(primary_key=True, foreign_key="run.seq")
    config_json: str
    inputs_json: str
    overrides_json: str


class DependencyRow(SQLModel, table=True):
    __tablename__ = "dependency"

    run_seq: int = Field(primary_key=True, foreign_key="run.seq")
    after_seq: int = Field(primary_key=True, foreign_key="run.seq")


class AttemptRow(SQLModel, table=True):
    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("run_seq", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    run_seq: int = Field(foreign_key="run.seq")
    number: int
    pid: int | None = None
    started: float
    finished: float | None = None
    exit_code: int | None = None
    gpus: str = ""  # comma-separated indices
    iterations: int | None = None


class MetricRow(SQLModel, table=True):
    __tablename__ = "metric"
    # The unique index doubles as the lookup index (run, name, step).
    __table_args__ = (UniqueConstraint("run_seq", "name", "step", "attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    run_seq: int = Field(foreign_key="run.seq")
    name: str
    step: int
    attempt: int
    value: float | None = None
    t: float | None = None


class ValidationRow(SQLModel, table=True):
    """One validation point of a training run (`validation` events; schema 3).

    A resumed run that validates a step again replaces its row: the newer model is the
    one whose checkpoint now carries that step.
    """

    __tablename__ = "validation"

    run_seq: int = Field(primary_key=True, foreign_key="run.seq")
    step: int = Field(primary_key=True)
    attempt: int
    voi_split: float | None = None
    voi_merge: float | None = None
    voi: float | None = None
    arand: float | None = None
    threshold: float | None = None
    seconds: float | None = None
    volumes_json: str = "{}"  # volume name -> its scores, as the engine reported them
    t: float | None = None


class BlockRow(SQLModel, table=True):
    """The latest state of one block of a blockwise run (`block` events)."""

    __tablename__ = "block"

    run_seq: int = Field(primary_key=True, foreign_key="run.seq")
    block_id: str = Field(primary_key=True)  # "TASK:INDEX", INDEX row-major over the grid
    status: str
    worker: str | None = None
    t: float | None = None
    # Schema 2: where the block lies, and why it last failed (kept until it is done).
    task: str | None = None
    grid: str | None = None  # comma-separated grid position, z first
    error: str | None = None
    seconds: float | None = None


class BlockGridRow(SQLModel, table=True):
    """The block grid of one task of a blockwise run (`blockgrid` events; schema 2)."""

    __tablename__ = "blockgrid"

    run_seq: int = Field(primary_key=True, foreign_key="run.seq")
    task: str = Field(primary_key=True)
    shape: str  # comma-separated blocks per axis, z first
    total: int
    block: str = ""  # comma-separated block shape in voxels
    offset: str = ""  # comma-separated offset of the grid in voxels
    t: float | None = None


class GpuReservationRow(SQLModel, table=True):
    __tablename__ = "gpu_reservation"

    gpu_index: int = Field(primary_key=True)
    run_seq: int = Field(primary_key=True, foreign_key="run.seq")
    shared: bool = False
