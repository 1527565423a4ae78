"""The executors, by name: where the workers of a blockwise task run. This registry is the
one list of executor names: the config's `predict.executor` choices, the CLI's
`--executor` help and the run spec read it. Adding one (Kubernetes, say) is a module
beside these, with a class like SlurmExecutor, and one line in `EXECUTORS`.

Light: no daisy or torch at import (the CLI imports the config, which imports this)."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from engine.blockwise.launchers.executor import Executor, Job
from engine.blockwise.task import WorkerSpec
from engine.errors import InputError


@dataclass(frozen=True)
class Registered:
    """An executor as the registry knows it: how the config's description names it, and
    its class as "module:Class", imported only when a worker is launched (the local
    executor serves blocks, and so imports daisy)."""

    summary: str
    target: str


EXECUTORS: dict[str, Registered] = {
    "local": Registered("local processes", "engine.blockwise.launchers.local:LocalExecutor"),
    "slurm": Registered("Slurm (sbatch)", "engine.blockwise.launchers.slurm:SlurmExecutor"),
    "lsf": Registered("LSF (bsub)", "engine.blockwise.launchers.lsf:LsfExecutor"),
}

if TYPE_CHECKING:
    ExecutorName = str
else:
    # A Literal built from the registry: pydantic validates it with a message that lists
    # the names, its JSON schema has them as an enum, and the TUI offers them as choices.
    ExecutorName = Literal[tuple(EXECUTORS)]

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorName",
    "Job",
    "Registered",
    "cluster_command",
    "executor_names",
    "get_executor",
    "one_of",
]


def executor_names() -> tuple[str, ...]:
    """The registered executor names, in registration order."""
    return tuple(EXECUTORS)


def one_of(words: list[str] | tuple[str, ...]) -> str:
    """How help texts and messages list choices: "a, b or c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


@functools.cache
def get_executor(name: str) -> Executor:
    """The executor registered as `name`; InputError naming the choices otherwise."""
    try:
        registered = EXECUTORS[name]
    except KeyError:
        raise InputError(f"unknown executor {name!r}: use {one_of(executor_names())}") from None
    module, _, attribute = registered.target.partition(":")
    executor: Executor = getattr(importlib.import_module(module), attribute)()
    return executor


def cluster_command(spec: WorkerSpec, worker: int, command: list[str], log: Path) -> list[str]:
    """The command line that submits `command` as worker `worker`'s job of
    `spec.executor` (sbatch; bsub, which waits)."""
    return get_executor(spec.executor).submit_command(spec, worker, command, log)
