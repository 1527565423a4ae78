"""The resolver's wire format: what a run asks for, and the run it resolves to.

`engine.runs.resolve` turns a `RunRequest` into a `ResolvedRun` (and writes `run.toml` from
one with a `WriteRequest`); the daemon asks it across a process boundary, one JSON object
a line (`python -m engine.runs.resolve --serve`), the CLI in-process. Both sides build and
parse these models, so this module imports only the standard library and pydantic: the
daemon, which imports no other engine code, may import it (engine.contract).

Defaults are no business of the wire: a `None` in `ResourcesAsked` means "the project's
setting", and only `engine.runs.resolve` turns it into a number (`Resources` is what it
answers, and what `run.toml` holds).
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

RunKind = Literal["train", "predict", "segment", "evaluate"]
# Executor names are the engine's registry (engine.blockwise.launchers), which this
# dependency-free module cannot import: the resolver checks them (resources()).
Executor = str


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Wire):
    """A run's resources, resolved: what `run.toml` holds and the entry points obey."""

    gpus: list[int] = Field(default_factory=list, description="GPU indices reserved for the run.")
    workers: int = Field(1, ge=1, description="Worker processes (blockwise runs).")
    executor: Executor = "local"


class ResourcesAsked(_Wire):
    """The resources a request asks for; None leaves the choice to the resolver (blockwise
    runs: predict.num_workers and predict.executor; train: one worker, local)."""

    gpus: list[int] = Field(
        default_factory=list, description="GPU indices reserved (the daemon, at launch)."
    )
    workers: int | None = Field(None, ge=1, description="Worker processes (blockwise runs).")
    executor: Executor | None = None


class RunRequest(_Wire):
    """op "prepare": resolve a run of `kind` in the project folder `project`.

    The project's config, rebased on `preset` if given, with `overrides` (dotted keys)
    applied and validated; `inputs` checked and filled from the project's runs (see
    engine.resolve); resources as asked, defaults filled. With `run_id` and `run_dir`
    the run directory is written too.
    """

    op: Literal["prepare"] = "prepare"
    kind: RunKind
    project: str = Field(min_length=1, description="The project folder.")
    preset: str | None = Field(None, description="Dataset preset to rebase the config on.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Dotted config keys and their values."
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Checkpoint, volumes, parent run: per kind."
    )
    resources: ResourcesAsked = Field(default_factory=ResourcesAsked)
    run_id: str | None = Field(None, description="Write the run directory, with this id.")
    run_dir: str | None = Field(None, description="Write the run directory here.")


class ProjectRef(_Wire):
    name: str
    path: str = Field(description="The project folder, absolute.")


class ResolvedRun(_Wire):
    """The answer to a prepare: the run, fully resolved.

    `config` is the validated project config as JSON (engine.runs.spec.RunSpec types it on
    the engine side); `inputs` are absolute, so resolving them again gives them back;
    `notes` are for the user. `id` and `run_dir` are set when `run.toml` was written.
    """

    ok: Literal[True] = True
    kind: RunKind
    project: ProjectRef
    config: dict[str, Any]
    inputs: dict[str, Any]
    resources: Resources
    notes: list[str] = Field(default_factory=list)
    id: str | None = None
    run_dir: str | None = None


class WriteRequest(_Wire):
    """op "write": write `run_dir/run.toml` for a run resolved before (its config is
    validated again; resources not given are filled as a prepare fills them)."""

    op: Literal["write"] = "write"
    kind: RunKind
    project: str = Field(min_length=1, description="The project folder.")
    run_id: str = Field(min_length=1)
    run_dir: str = Field(min_length=1)
    config: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    resources: ResourcesAsked = Field(default_factory=ResourcesAsked)


class Written(_Wire):
    """The answer to a write."""

    ok: Literal[True] = True


class Refused(_Wire):
    """Any request refused: `status` is the HTTP status a server answers with (404: no
    such project; 422: invalid; 500: the resolver failed); `message` is one line."""

    ok: Literal[False] = False
    status: int
    message: str


OPS = ("prepare", "write")
_Answer = TypeVar("_Answer", ResolvedRun, Written)


def parse_answer(line: str | bytes, expected: type[_Answer]) -> _Answer | Refused:
    """One answer line: `expected` when it says ok, else the refusal.

    ValueError (pydantic's ValidationError is one) when the line is neither.
    """
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("the resolver answered something other than an object")
    if data.get("ok") is False:
        return Refused.model_validate(data)
    return expected.model_validate(data)
