"""A run resolved from the CLI: engine.runs.resolve.prepare, in-process.

The same resolver the daemon asks (`python -m engine.runs.resolve --serve`), with the same
request model, so a run started with `--local` gets exactly the config, inputs and
resources the daemon would give it, and a submit is refused here, before a daemon
starts, for the same reasons the daemon would refuse it. engine.runs.resolve is light: torch
only ever loads in a child process (engine.runs.checkpoint_check).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.contract import ResolvedRun, ResourcesAsked, RunRequest, new_run_id
from engine.project.layout import Project
from engine.runs import resolve


def prepare_run(
    proj: Project,
    kind: str,
    *,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    workers: int | None = None,
    gpus: Sequence[int] = (),
    write: bool = False,
) -> ResolvedRun:
    """`kind` run of `proj` resolved; with `write`, its run directory created under the
    project's runs/ with a new run id (`.id`, `.run_dir` of the answer).

    `workers` None: the resolver's default (predict.num_workers for blockwise runs).
    `gpus`: GPU indices the run may use (nothing reserved without the daemon).
    InputError (one line) for anything the run cannot use; nothing is written then.
    """
    request = RunRequest(
        kind=kind,  # type: ignore[arg-type]  # RunRequest checks it
        project=str(proj.path.absolute()),
        preset=preset,
        overrides=dict(overrides or {}),
        inputs=dict(inputs or {}),
        resources=ResourcesAsked(workers=workers, gpus=list(gpus)),
    )
    if write:
        run_id = new_run_id(kind)
        request.run_id, request.run_dir = run_id, str(proj.runs_dir / run_id)
    return resolve.prepare(request)
