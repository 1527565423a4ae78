"""daisy's spawn function: what runs in the process daisy starts for a worker slot. It
hands the slot to the task's executor (engine.blockwise.launchers) and lives as long as
the worker does: that is how daisy counts and replaces workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.blockwise.launchers import get_executor
from engine.blockwise.task import STOPPING, WORKERS_DIR, WorkerSpec
from engine.errors import EngineError


def start_worker(spec: WorkerSpec, *, context: Any) -> None:
    """Launch worker slot `context["worker_id"]` through `spec.executor`, wait for its end
    and cancel it when this process is interrupted; raises EngineError when it failed."""
    if (Path(spec.run_dir) / WORKERS_DIR / STOPPING).exists():
        return  # the run is stopping: daisy replaced a worker it is ending
    worker = int(context["worker_id"])
    executor = get_executor(spec.executor)
    job = executor.launch(spec, worker, context.to_env())
    code: int | None = None
    try:
        while code is None:
            code = executor.poll(job)
    finally:
        if code is None:
            executor.cancel(job)
    if code != 0:
        raise EngineError(
            f"{spec.executor} worker {worker} ended with exit code {code} (see {job.log})"
        )
