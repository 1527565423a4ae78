"""The LSF executor: each worker is a `bsub -K` job; bsub waits for the job, and killing
it (when the run is interrupted) ends the job."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from engine.blockwise.launchers.executor import Job, job_name, prepare_cluster_job
from engine.blockwise.task import WorkerSpec

# How long one poll waits on bsub: it returns as soon as bsub does.
_POLL_S = 1.0


class LsfExecutor:
    def submit_command(
        self, spec: WorkerSpec, worker: int, command: list[str], log: Path
    ) -> list[str]:
        c = spec.cluster
        line = ["bsub", "-K", "-J", job_name(spec, worker), "-o", str(log), "-cwd", spec.run_dir]
        if c.gpu:
            line += ["-gpu", "num=1"]
        if c.partition:
            line += ["-q", c.partition]
        if c.time_limit:
            line += ["-W", _lsf_minutes(c.time_limit)]
        if c.account:
            line += ["-P", c.account]
        return [*line, *c.extra, shlex.join(command)]

    def launch(self, spec: WorkerSpec, worker: int, daisy_context: str) -> Job:
        job = prepare_cluster_job(self, spec, worker, daisy_context)
        process = subprocess.Popen(job.submit, env=job.env, cwd=spec.run_dir)
        return Job(id=str(process.pid), log=job.log, process=process)

    def poll(self, job: Job) -> int | None:
        assert job.process is not None  # launch sets it
        try:
            return job.process.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            return None

    def cancel(self, job: Job) -> None:
        if job.process is not None:
            job.process.kill()
            job.process.wait()


def _lsf_minutes(time_limit: str) -> str:
    """LSF's -W takes [hours:]minutes; config gives Slurm's [hours:]minutes:seconds."""
    parts = [int(p) for p in time_limit.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts[-3:]
    total = hours * 60 + minutes + (1 if seconds else 0)
    return f"{total // 60}:{total % 60:02d}"
