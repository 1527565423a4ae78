"""`RUN_DIR/run.toml`, the run spec: what to run, written once by whoever starts a run.

It holds the kind, the fully resolved project config, inputs and resources. The rest of
the run directory's contract (file names, events, run ids, checkpoint names) is
engine.contract, which the daemon reads too; this module needs the project config.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.contract import RUN_FILE
from engine.contract import Resources as Resources
from engine.contract import RunKind as RunKind
from engine.errors import InputError
from engine.project import config as cfg

# Resources and RunKind are defined with the resolver's wire models (engine.contract),
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
