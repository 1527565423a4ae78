"""What an executor is (launch, poll, cancel one worker of a blockwise task), and what
every cluster executor does around its own submit line: the worker's command line
(`python -m engine.blockwise RUN_DIR TASK_ID TARGET`), its log file, the environment
that connects it back to daisy's scheduler, and a SIGTERM that cancels the job."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

from engine.blockwise.task import WORKERS_DIR, WorkerSpec, safe_name

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One launched worker: its id (a job id, or a pid), its log file and, for an
    executor that waits on a child process (bsub -K), that process; `code` once known."""

    id: str
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    code: int | None = None
    delay: float = 0.2  # the wait before the next poll, for executors that back off


class Executor(Protocol):
    """Where the workers of a blockwise task run; registered by name in
    engine.blockwise.launchers."""

    def launch(self, spec: WorkerSpec, worker: int, daisy_context: str) -> Job:
        """Start worker slot `worker` (`daisy_context`: daisy's DAISY_CONTEXT for it)."""
        ...

    def poll(self, job: Job) -> int | None:
        """The job's exit code once it has ended, else None after a short wait (the
        executor's own pace)."""
        ...

    def cancel(self, job: Job) -> None:
        """End a job that is still running (the run was interrupted)."""
        ...

    def submit_command(
        self, spec: WorkerSpec, worker: int, command: list[str], log: Path
    ) -> list[str]:
        """The command line that submits `command` as worker `worker`'s job."""
        ...


@dataclass(frozen=True)
class ClusterJob:
    """A cluster worker, ready to submit: the submit line, its environment, its log."""

    submit: list[str]
    env: dict[str, str]
    log: Path


def prepare_cluster_job(
    executor: Executor, spec: WorkerSpec, worker: int, daisy_context: str
) -> ClusterJob:
    """The submit line, environment and log of worker `worker` as a job of `executor`;
    from here on a SIGTERM to this process raises SystemExit, so that the caller's
    wait ends and it cancels the job on its way out."""
    command = [spec.python, "-m", "engine.blockwise", spec.run_dir, spec.task_id, spec.target]
    log = Path(spec.run_dir) / WORKERS_DIR / f"{safe_name(spec.task_id)}.cluster-{worker}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DAISY_CONTEXT": daisy_context, "PYTHONUNBUFFERED": "1"}
    submit = executor.submit_command(spec, worker, command, log)
    logger.info("worker %d: %s", worker, shlex.join(submit))
    signal.signal(signal.SIGTERM, _exit_on_signal)
    return ClusterJob(submit, env, log)


def job_name(spec: WorkerSpec, worker: int) -> str:
    """The cluster job name of worker `worker` (at most 64 characters)."""
    return f"lsdctl-{safe_name(spec.task_id)}-{worker}"[:64]


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
