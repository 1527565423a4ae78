"""Running blockwise tasks on daisy: the stages of one grid become daisy tasks whose
workers start through their executor (engine.blockwise.launchers); the scheduler serves
them in a thread of its own, relays their events, and reports how the run ended. torch
is never imported here."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.blockwise.relay import Relay
from engine.blockwise.spawn import start_worker
from engine.blockwise.stopping import Interrupted, children, end_children, stop_requested
from engine.blockwise.task import STOPPING, WORKERS_DIR, Cluster, Grid, Outcome, Stage, WorkerSpec
from engine.contract import EventWriter

if TYPE_CHECKING:  # only for types: workers start without loading the config models
    from engine.project.config import ProjectConfig


def _serve_until_done_or_stopped(
    server: Any, pipeline: Any, relay: Relay, host: str, run_dir: Path
) -> tuple[Any, str | None]:
    """daisy's server in a thread of its own: the main thread must stay in Python to see
    signals (daisy's loop runs in Rust and would finish the whole run before a SIGTERM
    handler got to run)."""
    found: dict[str, Any] = {}

    def serve() -> None:
        try:
            found["states"] = server.run_blockwise(
                pipeline, progress=relay, host=host, summary=False
            )
        except RuntimeError as exc:  # daisy abandons a task whose workers keep dying
            found["error"] = str(exc)
        except BaseException as exc:  # surfaced in the main thread
            found["raised"] = exc

    thread = threading.Thread(target=serve, name="daisy-server", daemon=True)
    thread.start()
    while thread.is_alive():
        if stop_requested():
            (run_dir / WORKERS_DIR / STOPPING).touch()
            # daisy may replace a worker while the others end: until none are left.
            for _ in range(3):
                end_children()
                if not children():
                    break
            raise Interrupted("stopped by a signal: finished blocks are kept, run it again")
        thread.join(0.2)
    if "raised" in found:
        raise found["raised"]
    return found.get("states"), found.get("error")


def run_task(*, task_id: str, target: str, tracking_dir: Path, **kwargs: Any) -> Outcome:
    """Run one blockwise task (see `run_stages`)."""
    return run_stages(stages=[Stage(task_id, target, tracking_dir)], **kwargs)


def run_stages(
    *,
    stages: Sequence[Stage],
    grid: Grid,
    run_dir: Path,
    events: EventWriter,
    workers: int,
    executor: str = "local",
    gpus: Sequence[int] = (),
    retries: int = 2,
    timeout: float | None = None,
    host: str = "127.0.0.1",
    cluster: Cluster | None = None,
    max_worker_restarts: int | None = None,
    progress: tuple[int, int] | None = None,
) -> Outcome:
    """Run blockwise tasks over one grid to their end and say how it went (never raises
    for blocks).

    Each stage reads what the one before wrote: daisy starts a block of stage k once the
    blocks of stage k-1 within its read ROI are done, so the stages overlap, and all
    their workers start up together. Blocks recorded in a stage's `tracking_dir` by an
    earlier run are skipped. `progress` is (blocks of the run done before these stages,
    blocks of the whole run) for the progress events. Worker logs go to RUN_DIR/workers/
    (daisy would write them into the current directory).
    """
    import daisy.v2 as daisy
    from daisy import logging as daisy_logging
    from funlib.geometry import Coordinate, Roi

    run_dir = run_dir.resolve()
    daisy_logging.set_log_basedir(run_dir / WORKERS_DIR)
    (run_dir / WORKERS_DIR).mkdir(parents=True, exist_ok=True)
    (run_dir / WORKERS_DIR / STOPPING).unlink(missing_ok=True)
    context = Coordinate(grid.context)
    total = Roi(grid.offset, grid.extent).grow(context, context)
    block = Coordinate(grid.block)
    tasks = []
    for stage in stages:
        spec = WorkerSpec(
            run_dir=str(run_dir),
            task_id=stage.task_id,
            target=stage.target,
            executor=executor,
            gpus=tuple(gpus),
            cluster=cluster or Cluster(),
        )
        tasks.append(
            daisy.Task(
                stage.task_id,
                total_roi=total,
                read_roi=Roi((0,) * len(block), block + context * 2),
                write_roi=Roi(context, block),
                process_function=partial(start_worker, spec),
                read_write_conflict=False,
                fit="overhang",
                max_workers=min(workers, grid.num_blocks),  # no idle worker start-ups
                max_retries=retries,
                timeout=timeout or None,
                tracking_path=str(stage.tracking_dir),
                max_worker_restarts=(
                    max_worker_restarts
                    if max_worker_restarts is not None
                    else 3 * workers + retries
                ),
            )
        )
    pipeline = daisy.Pipeline.from_task(tasks[0])
    for task in tasks[1:]:
        pipeline = pipeline + task
    task_ids = [stage.task_id for stage in stages]
    relay = Relay(run_dir, events, grid, task_ids, progress)
    for task_id in task_ids:
        events.emit(
            "blockgrid",
            task=task_id,
            shape=list(grid.shape),
            total=grid.num_blocks,
            block=list(grid.block),
            offset=list(grid.offset),
        )
    relay.start()
    start = time.monotonic()
    error: str | None = None
    try:
        states, error = _serve_until_done_or_stopped(daisy.Server(), pipeline, relay, host, run_dir)
    finally:
        relay.stop()
    seconds = time.monotonic() - start
    expected = grid.num_blocks * len(stages)
    if states is None:
        return Outcome(expected, 0, 0, 0, seconds, error)
    mine = [states[t] for t in task_ids]
    outcome = Outcome(
        total=sum(int(s.total_block_count) for s in mine),
        completed=sum(int(s.completed_count) for s in mine),
        skipped=sum(int(s.skipped_count) for s in mine),
        failed=sum(int(s.failed_count) + int(s.orphaned_count) for s in mine),
        seconds=seconds,
        masked=len(relay.masked),
    )
    abandoned = [s for s in mine if s.abandoned]
    if abandoned:
        state = abandoned[0]
        outcome.error = f"workers kept failing: {state.abandon_reason}\n{state.last_worker_error}"
    elif outcome.completed < outcome.total:
        first = next(iter(relay.failures.items()), None)
        if first is not None:
            (task, offset), message = first
            outcome.error = (
                f"{task}: block at {list(offset)} failed {retries + 1} times; its last "
                f"error:\n{message}"
            )
        else:
            last = next((s.last_worker_error for s in mine if s.last_worker_error), None)
            outcome.error = (
                f"{outcome.total - outcome.completed} of {outcome.total} blocks did not "
                f"finish: {last or 'no error was reported'}"
            )
    return outcome


def scheduling(config: ProjectConfig, executor: str, gpu: bool) -> dict[str, Any]:
    """The keyword arguments of `run_stages` that come from the config's predict section
    (retries, timeout, scheduler address, cluster settings); `gpu`: whether cluster jobs
    ask for a GPU (prediction does when predict.cluster_gpu, segmentation never)."""
    predict = config.predict
    return {
        "executor": executor,
        "retries": predict.retries,
        "timeout": predict.block_timeout or None,
        "host": predict.scheduler_host if executor != "local" else "127.0.0.1",
        "cluster": Cluster(predict.partition, predict.time_limit, predict.account, gpu),
    }
