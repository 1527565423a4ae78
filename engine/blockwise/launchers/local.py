"""The local executor: the process daisy started for the worker slot serves the blocks
itself, on GPU i mod n (CUDA_VISIBLE_DEVICES, set before anything imports torch)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.blockwise.launchers.executor import Job
from engine.blockwise.task import WorkerSpec
from engine.blockwise.worker import serve
from engine.errors import InputError


class LocalExecutor:
    def submit_command(
        self, spec: WorkerSpec, worker: int, command: list[str], log: Path
    ) -> list[str]:
        raise InputError("local workers are not submitted as jobs")

    def launch(self, spec: WorkerSpec, worker: int, daisy_context: str) -> Job:
        """Serve blocks in this process until none are left (daisy's context is already
        in its environment): the job has ended when this returns."""
        gpu = str(spec.gpus[worker % len(spec.gpus)]) if spec.gpus else ""
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        serve(Path(spec.run_dir), spec.task_id, spec.target)
        return Job(id=str(os.getpid()), code=0)

    def poll(self, job: Job) -> int | None:
        return job.code

    def cancel(self, job: Job) -> None:
        """Nothing to cancel: the worker was this process, and it has returned."""
