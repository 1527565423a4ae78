"""The Slurm executor: each worker is an `sbatch` job, watched with squeue and scontrol
(no accounting database needed) and cancelled with scancel."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from engine.blockwise.launchers.executor import Job, job_name, prepare_cluster_job
from engine.blockwise.task import WorkerSpec
from engine.errors import EngineError

_ENDED = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
}  # fmt: skip
# Polled rather than `sbatch --wait`, whose back-off adds up to half a minute to every
# run's end, and so that an interrupted run cancels its jobs.
_MAX_DELAY_S = 2.0


class SlurmExecutor:
    def submit_command(
        self, spec: WorkerSpec, worker: int, command: list[str], log: Path
    ) -> list[str]:
        c = spec.cluster
        line = ["sbatch", "--parsable", "--job-name", job_name(spec, worker), "--output", str(log)]
        line += ["--export", "ALL", "--chdir", spec.run_dir]
        if c.gpu:
            line += ["--gres", "gpu:1"]
        if c.partition:
            line += ["--partition", c.partition]
        if c.time_limit:
            line += ["--time", c.time_limit]
        if c.account:
            line += ["--account", c.account]
        return [*line, *c.extra, "--wrap", shlex.join(command)]

    def launch(self, spec: WorkerSpec, worker: int, daisy_context: str) -> Job:
        job = prepare_cluster_job(self, spec, worker, daisy_context)
        done = subprocess.run(job.submit, env=job.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EngineError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
        return Job(id=done.stdout.strip().split(";")[0], log=job.log)

    def poll(self, job: Job) -> int | None:
        state = subprocess.run(
            ["squeue", "-j", job.id, "-h", "-t", "all", "-o", "%T"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if state in _ENDED or (not state and _exit_code(job.id) is not None):
            code = _exit_code(job.id)
            if state != "COMPLETED" and not code:
                return 1
            return code or 0
        time.sleep(job.delay)
        job.delay = min(job.delay * 1.5, _MAX_DELAY_S)
        return None

    def cancel(self, job: Job) -> None:
        subprocess.run(["scancel", job.id], check=False, capture_output=True)


def _exit_code(job_id: str) -> int | None:
    """ExitCode of a finished job from scontrol (sacct needs an accounting database)."""
    shown = subprocess.run(
        ["scontrol", "show", "job", job_id, "-o"], capture_output=True, text=True, check=False
    ).stdout
    for item in shown.split():
        if item.startswith("ExitCode="):
            return int(item.split("=", 1)[1].split(":")[0])
    return None
