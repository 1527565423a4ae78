"""The run directory: the contract between whoever starts a run and the engine.

`RUN_DIR/run.toml` (written once) says what to run: the kind, the fully resolved project
config, inputs and resources. `events.jsonl` is what the run reports; `log.txt` holds
its stdout and stderr; outputs (checkpoints, zarr, metrics) sit beside them.
"""

from __future__ import annotations

import secrets
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import InputError
from engine.project import config as cfg
from engine.run_request import Resources as Resources
from engine.run_request import RunKind as RunKind

RUN_FILE = "run.toml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
CHECKPOINTS = "checkpoints"
# CHECKPOINTS/best.json: the checkpoint with the best validation VOI so far (kept whatever
# train.keep_checkpoints says) and the threshold chosen with it, written by engine.train.trainer:
# {"iteration", "path", "step", "threshold", "voi_split", "voi_merge", "voi", "arand"}.
BEST_FILE = "best.json"

# Resources and RunKind are defined with the resolver's wire models (engine.run_request),
# which the daemon reads too; run.toml holds the same Resources the resolver answers.


class RunSpec(BaseModel):
    """What `run.toml` holds."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: RunKind
    project: str = Field(description="The project folder the run belongs to.")
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    config: cfg.ProjectConfig
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Checkpoint, volumes, parent run: per kind."
    )
    resources: Resources = Field(default_factory=Resources)


def new_run_id(kind: str) -> str:
    """Sortable by time, unique without coordination: `train-20261126-114502-3f9a`."""
    return f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def write_spec(run_dir: Path, spec: RunSpec) -> None:
    """Create the run directory with its run.toml (refuses to overwrite one)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_FILE
    if path.exists():
        raise InputError(f"{path} exists already: a run directory is written once")
    data = spec.model_dump(mode="json", exclude_none=True)
    cfg.write_atomic(path, tomlkit.dumps(data))


def read_spec(run_dir: Path) -> RunSpec:
    path = run_dir / RUN_FILE
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{run_dir} is not a run directory: {RUN_FILE} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid {path}: {cfg.describe_errors(exc)}") from None


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """A train run's best.json (None when it has none, or an unreadable one)."""
    import json

    try:
        data = json.loads((run_dir / CHECKPOINTS / BEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("iteration"), int):
        return None
    return data
