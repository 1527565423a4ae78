"""Blockwise tasks on daisy: one module builds and runs them, for predict and segment.

A task covers an output ROI with write blocks (aligned to the output's zarr chunks) and
reads each block grown by a context. Workers are processes of their own: daisy starts
each through `_start_worker`, which either serves blocks in that process (`local`, with
CUDA_VISIBLE_DEVICES set to GPU i mod n before anything imports torch) or hands the
serving over to a Slurm or LSF job that connects back to daisy's scheduler. torch is
never imported by the scheduling process.

What survives a crash: daisy records finished blocks in `tracking_dir` (one byte a
block, beside the output), so a task started again does only the rest. A block that
raises is caught in the worker, reported as failed and retried (`retries`); the worker
lives on, so the model is loaded once per worker, not once per failure. A worker that
dies (killed, out of memory) is replaced, up to a cap. Block events are written by each
worker to a file of its own (`RUN_DIR/blocks/`, safe on a shared cluster filesystem)
and relayed by the scheduling process into `events.jsonl`, the run's single writer.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from engine.contract import EVENTS_FILE, RUN_FILE, EventWriter, read_events
from engine.entry import configure_logging, missing_run_dir
from engine.errors import EngineError, InputError

if TYPE_CHECKING:  # only for types: workers start without loading the config models
    from engine.config import ProjectConfig

logger = logging.getLogger(__name__)

Executor = Literal["local", "slurm", "lsf"]
BLOCKS_DIR = "blocks"
WORKERS_DIR = "workers"
# Progress events at most this often: daisy reports every block change.
_PROGRESS_EVERY_S = 0.5
# What a block processor returns for a block it had nothing to do for (outside the mask):
# the block counts as finished, and its event says "skipped" rather than "done".
SKIPPED = "skipped"


class BlockFailed(EngineError):
    """A block failed more often than its retries allow; the message holds its traceback."""


class BlockProcessor(Protocol):
    """What a worker runs: built once per worker, then called once per block; returns
    SKIPPED for a block it left alone on purpose (outside the mask), else None.

    A processor may also have `lanes` (an int, default 1): that many threads then call
    it at once, each serving blocks through a daisy client of its own, so one block's
    reads and writes overlap another's compute; and `close()`, called after the last
    block. Each lane holds one block at a time and releases it before asking for the
    next: a daisy client is bound to its thread, and one told that no blocks are left
    disconnects, losing any block it still holds.
    """

    def __call__(self, block: Any) -> str | None: ...


@dataclass(frozen=True)
class Cluster:
    """Where and how cluster workers run (from the predict section of the config)."""

    partition: str = ""
    time_limit: str = ""
    account: str = ""
    gpu: bool = True
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable: daisy ships it to each worker process.

    `target` is "module:factory"; `factory(run_dir, task_id)` returns the block processor.
    """

    run_dir: str
    task_id: str
    target: str
    executor: Executor = "local"
    gpus: tuple[int, ...] = ()
    cluster: Cluster = field(default_factory=Cluster)
    python: str = sys.executable


@dataclass(frozen=True)
class Grid:
    """The block layout of one task, in world units (nm), z first.

    `total_write` is the output ROI; blocks of `block` tile it from its offset (the last
    ones overhang and are cropped when written); each block reads `context` more on each
    side. `shape` is the number of blocks per axis.
    """

    offset: tuple[int, ...]
    extent: tuple[int, ...]
    block: tuple[int, ...]
    context: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(-(-e // b) for e, b in zip(self.extent, self.block))

    @property
    def num_blocks(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def position(self, write_offset: Sequence[int]) -> tuple[int, ...]:
        """Grid coordinates of the block whose write ROI starts at `write_offset`."""
        return tuple((w - o) // b for w, o, b in zip(write_offset, self.offset, self.block))

    def block_offsets(self) -> list[tuple[int, ...]]:
        """The world offset of every write block, in row-major (index) order."""
        ranges = [range(s) for s in self.shape]
        return [
            tuple(o + p * b for o, p, b in zip(self.offset, position, self.block))
            for position in itertools.product(*ranges)
        ]

    def index(self, write_offset: Sequence[int]) -> int:
        """Row-major block index: stable across runs, so ids derived from it are too."""
        index = 0
        for p, s in zip(self.position(write_offset), self.shape):
            index = index * s + p
        return index


@dataclass
class Outcome:
    """How a task ended."""

    total: int
    completed: int
    skipped: int
    failed: int
    seconds: float
    error: str | None = None
    masked: int = 0
    """Blocks finished without work: the processor skipped them (outside the mask)."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.completed >= self.total


def _import_target(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# ---- worker side ---------------------------------------------------------------------


class _BlockLog:
    """One worker's block events, one JSON object a line, in a file only it writes."""

    def __init__(self, run_dir: Path, task_id: str, worker: int) -> None:
        folder = run_dir / BLOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{_safe(task_id)}.w{worker}.{os.uname().nodename}.{os.getpid()}.jsonl"
        self._file = (folder / name).open("a", buffering=1)
        self.worker = worker
        self._lock = threading.Lock()  # lanes write too

    def write(self, **event: Any) -> None:
        event = {"t": round(time.time(), 3), "worker": self.worker, **event}
        with self._lock:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()


def _safe(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id)


def serve(run_dir: Path, task_id: str, target: str) -> None:
    """Connect to daisy's scheduler (DAISY_CONTEXT) and process blocks until none are left."""
    import daisy.v2 as daisy

    client = daisy.Client()
    log = _BlockLog(run_dir, task_id, client.worker_id)
    log.write(
        type="worker",
        status="started",
        task=task_id,
        host=os.uname().nodename,
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES") or None,
    )
    process: BlockProcessor = _import_target(target)(run_dir, task_id)
    lanes = max(1, int(getattr(process, "lanes", 1)))
    served = [0] * lanes
    errors: list[BaseException] = []

    def lane(i: int) -> None:
        try:
            served[i] = _serve_lane(daisy.Client(), process, log, task_id)
        except BaseException as exc:  # re-raised in the worker's main thread
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(i,), name=f"lane-{i}") for i in range(1, lanes)]
    try:
        for thread in threads:
            thread.start()
        served[0] = _serve_lane(client, process, log, task_id)  # lane 0: this thread's client
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    finally:
        close = getattr(process, "close", None)
        if close is not None:
            close()
    log.write(type="worker", status="finished", task=task_id, blocks=sum(served))


def _serve_lane(client: Any, process: BlockProcessor, log: _BlockLog, task_id: str) -> int:
    """Blocks from `client`, one at a time, until none are left; how many were done."""
    import daisy.v2 as daisy

    served = 0
    while True:
        with client.acquire_block() as block:
            if block is None:
                return served
            offset = tuple(int(v) for v in block.write_roi.offset)
            log.write(type="block", task=task_id, offset=offset, status="running")
            start = time.monotonic()
            try:
                result = process(block)
            except Exception:
                # Caught here, not in daisy: a raising block would otherwise end the
                # worker, and with it the loaded model. daisy retries the block.
                block.status = daisy.BlockStatus.FAILED
                error = traceback.format_exc()
                logger.error("block at %s failed:\n%s", offset, error)
                log.write(type="block", task=task_id, offset=offset, status="failed", error=error)
                continue
            served += 1
            log.write(
                type="block",
                task=task_id,
                offset=offset,
                status=SKIPPED if result == SKIPPED else "done",
                seconds=round(time.monotonic() - start, 3),
            )


STOPPING = "STOPPING"


def _start_worker(spec: WorkerSpec, *, context: Any) -> None:
    """daisy's spawn function: runs in a fresh process daisy started for worker slot i."""
    if (Path(spec.run_dir) / WORKERS_DIR / STOPPING).exists():
        return  # the run is stopping: daisy replaced a worker it is ending
    worker = int(context["worker_id"])
    env_context = context.to_env()
    gpu = str(spec.gpus[worker % len(spec.gpus)]) if spec.gpus else ""
    if spec.executor == "local":
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        serve(Path(spec.run_dir), spec.task_id, spec.target)
        return
    command = [spec.python, "-m", "engine.blockwise", spec.run_dir, spec.task_id, spec.target]
    log = Path(spec.run_dir) / WORKERS_DIR / f"{_safe(spec.task_id)}.cluster-{worker}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DAISY_CONTEXT": env_context, "PYTHONUNBUFFERED": "1"}
    submit = cluster_command(spec, worker, command, log)
    logger.info("worker %d: %s", worker, shlex.join(submit))
    # This spawn function lives as long as its job: that is how daisy counts and replaces
    # workers. A SIGTERM to the run reaches it too; it then cancels the job on its way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if spec.executor == "slurm":
        code = _run_slurm_job(submit, env)
    else:  # bsub -K waits for the job, and kills it when interrupted
        code = subprocess.run(submit, env=env, cwd=spec.run_dir, check=False).returncode
    if code != 0:
        raise EngineError(
            f"{spec.executor} worker {worker} ended with exit code {code} (see {log})"
        )


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


_SLURM_ENDED = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
}  # fmt: skip


def _run_slurm_job(submit: list[str], env: dict[str, str]) -> int:
    """Submit with sbatch, wait for the job's end, return its exit code.

    Polled with squeue rather than `sbatch --wait`, whose back-off adds up to half a
    minute to every run's end, and so that an interrupted run cancels its jobs.
    """
    job = subprocess.run(submit, env=env, capture_output=True, text=True, check=False)
    if job.returncode != 0:
        raise EngineError(f"sbatch failed: {job.stderr.strip() or job.stdout.strip()}")
    job_id = job.stdout.strip().split(";")[0]
    finished = False
    delay = 0.2
    try:
        while True:
            state = subprocess.run(
                ["squeue", "-j", job_id, "-h", "-t", "all", "-o", "%T"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if state in _SLURM_ENDED or (not state and _slurm_exit_code(job_id) is not None):
                finished = True
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
    finally:
        if not finished:
            subprocess.run(["scancel", job_id], check=False, capture_output=True)
    code = _slurm_exit_code(job_id)
    if state != "COMPLETED" and not code:
        return 1
    return code or 0


def _slurm_exit_code(job_id: str) -> int | None:
    """ExitCode of a finished job from scontrol (sacct needs an accounting database)."""
    shown = subprocess.run(
        ["scontrol", "show", "job", job_id, "-o"], capture_output=True, text=True, check=False
    ).stdout
    for item in shown.split():
        if item.startswith("ExitCode="):
            return int(item.split("=", 1)[1].split(":")[0])
    return None


def cluster_command(spec: WorkerSpec, worker: int, command: list[str], log: Path) -> list[str]:
    """The sbatch or bsub command line that submits one worker as a job (bsub waits)."""
    name = f"lsdctl-{_safe(spec.task_id)}-{worker}"[:64]
    wrapped = shlex.join(command)
    c = spec.cluster
    if spec.executor == "slurm":
        line = ["sbatch", "--parsable", "--job-name", name, "--output", str(log)]
        line += ["--export", "ALL", "--chdir", spec.run_dir]
        if c.gpu:
            line += ["--gres", "gpu:1"]
        if c.partition:
            line += ["--partition", c.partition]
        if c.time_limit:
            line += ["--time", c.time_limit]
        if c.account:
            line += ["--account", c.account]
        return [*line, *c.extra, "--wrap", wrapped]
    if spec.executor == "lsf":
        line = ["bsub", "-K", "-J", name, "-o", str(log), "-cwd", spec.run_dir]
        if c.gpu:
            line += ["-gpu", "num=1"]
        if c.partition:
            line += ["-q", c.partition]
        if c.time_limit:
            line += ["-W", _lsf_minutes(c.time_limit)]
        if c.account:
            line += ["-P", c.account]
        return [*line, *c.extra, wrapped]
    raise InputError(f"unknown executor {spec.executor!r}: use local, slurm or lsf")


def _lsf_minutes(time_limit: str) -> str:
    """LSF's -W takes [hours:]minutes; config gives Slurm's [hours:]minutes:seconds."""
    parts = [int(p) for p in time_limit.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts[-3:]
    total = hours * 60 + minutes + (1 if seconds else 0)
    return f"{total // 60}:{total % 60:02d}"


# ---- scheduler side ------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One task of a blockwise run: its id, the worker factory, where done blocks are kept."""

    task_id: str
    target: str
    tracking_dir: Path


class _Relay:
    """Moves the workers' block events into events.jsonl, and daisy's counts as progress.

    daisy calls the observer methods from its own threads, the relay thread reads the
    block files: everything that writes events goes through one lock.
    """

    def __init__(
        self,
        run_dir: Path,
        events: EventWriter,
        grid: Grid,
        task_ids: Sequence[str],
        progress: tuple[int, int] | None,
    ) -> None:
        self.progress = progress
        self.folder = run_dir / BLOCKS_DIR
        self.events = events
        self.grid = grid
        self.task_ids = list(task_ids)
        self.prefixes = [f"{_safe(t)}.w" for t in task_ids]
        self.lock = threading.Lock()
        self.offsets: dict[Path, int] = {}
        self.failures: dict[tuple[str, tuple[int, ...]], str] = {}
        self.masked: set[tuple[str, tuple[int, ...]]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="block-relay", daemon=True)
        self._last_progress = 0.0
        self.folder.mkdir(parents=True, exist_ok=True)
        # Files of an earlier attempt were relayed then: start after their end.
        for path in self._files():
            self.offsets[path] = path.stat().st_size

    def _files(self) -> list[Path]:
        return sorted(p for prefix in self.prefixes for p in self.folder.glob(f"{prefix}*.jsonl"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self.poll()

    def poll(self) -> None:
        for path in self._files():
            found, self.offsets[path] = read_events(path, self.offsets.get(path, 0))
            for event in found:
                self._relay(event)

    def _relay(self, event: dict[str, Any]) -> None:
        worker = event.get("worker")
        task = str(event.get("task"))
        with self.lock:
            if event.get("type") == "worker":
                extra = {k: event[k] for k in ("host", "gpu", "blocks") if k in event}
                self.events.emit(
                    "worker", task=task, worker=worker, status=event.get("status"), **extra
                )
                return
            offset = tuple(event.get("offset") or ())
            status = str(event.get("status"))
            fields: dict[str, Any] = {
                "id": f"{task}:{self.grid.index(offset)}",
                "task": task,
                "grid": list(self.grid.position(offset)),
                "status": status,
                "worker": worker,
            }
            if status == "failed":
                self.failures[(task, offset)] = str(event.get("error", ""))
                fields["error"] = self.failures[(task, offset)][-4000:]
            elif status in ("done", SKIPPED):
                self.failures.pop((task, offset), None)
                fields["seconds"] = event.get("seconds")
                if status == SKIPPED:
                    self.masked.add((task, offset))
            self.events.emit("block", **fields)

    # daisy's observer protocol
    def on_start(self, states: dict[str, Any]) -> None:
        self._progress(states, force=True)

    def on_progress(self, states: dict[str, Any]) -> None:
        self._progress(states)

    def on_finish(self, states: dict[str, Any]) -> None:
        self._progress(states, force=True)

    def _progress(self, states: dict[str, Any], force: bool = False) -> None:
        mine = [states[t] for t in self.task_ids if t in states]
        if not mine:
            return
        now = time.monotonic()
        if not force and now - self._last_progress < _PROGRESS_EVERY_S:
            return
        self._last_progress = now
        done = sum(int(s.completed_count) for s in mine)
        total = sum(int(s.total_block_count) for s in mine)
        failed = sum(int(s.failed_count) for s in mine)
        if self.progress is not None:  # part of a larger run: the run's count
            done, total = done + self.progress[0], self.progress[1]
        with self.lock:
            self.events.emit(
                "progress", task=",".join(self.task_ids), done=done, total=total, failed=failed
            )


class Interrupted(EngineError):
    """`request_stop()` was called (a SIGTERM): the run stopped; finished blocks are kept."""


_STOP = threading.Event()


def request_stop() -> None:
    """Stop the blockwise run in progress: its workers are ended, `run_stages` raises
    Interrupted. Safe to call from a signal handler."""
    _STOP.set()


def _serve_until_done_or_stopped(
    server: Any, pipeline: Any, relay: _Relay, host: str, run_dir: Path
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
        if _STOP.is_set():
            (run_dir / WORKERS_DIR / STOPPING).touch()
            # daisy may replace a worker while the others end: until none are left.
            for _ in range(3):
                _end_children()
                if not _children():
                    break
            raise Interrupted("stopped by a signal: finished blocks are kept, run it again")
        thread.join(0.2)
    if "raised" in found:
        raise found["raised"]
    return found.get("states"), found.get("error")


def _end_children(grace: float = 5.0) -> None:
    """SIGTERM this process's children (the workers; a cluster worker's submitter cancels
    its job on SIGTERM), then SIGKILL what is left after `grace` seconds."""
    children = _children()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in children):
        time.sleep(0.1)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


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
    executor: Executor = "local",
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
                process_function=partial(_start_worker, spec),
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
    relay = _Relay(run_dir, events, grid, task_ids, progress)
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


def entry_point(
    prog: str,
    description: str | None,
    run: Callable[[Path, bool, EventWriter], int],
    argv: Sequence[str] | None = None,
) -> int:
    """The shell of a blockwise entry point (`python -m engine.predict|segment RUN_DIR
    [--overwrite]`): logging, events, SIGTERM (stops the run, see `request_stop`) and
    the exit codes of the run-directory contract: 0 done, 1 failed, 2 bad input (one
    `error:` line on stderr), 3 interrupted (resumable)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace outputs of another run or settings."
    )
    args = parser.parse_args(argv)
    configure_logging()
    run_dir: Path = args.run_dir
    if missing_run_dir(run_dir, RUN_FILE):
        return 2
    events = EventWriter(run_dir / EVENTS_FILE)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())
    try:
        return run(run_dir, args.overwrite, events)
    except InputError as exc:
        events.emit("error", durable=True, message=str(exc))
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (Interrupted, KeyboardInterrupt):
        # Finished blocks are recorded; the next start does the rest.
        events.emit("interrupted", durable=True, message="stopped by a signal; resumable")
        logger.info("interrupted: finished blocks are kept, start the run again to resume")
        return 3
    except Exception as exc:
        events.emit("error", durable=True, message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    finally:
        events.close()
        signal.signal(signal.SIGTERM, previous)


def exit_process(code: int) -> NoReturn:
    """Leave a blockwise entry point's process. Not sys.exit: after an interruption
    daisy's server thread (Rust) may still run, and interpreter shutdown under it aborts
    the process (exit 134 instead of 3)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.blockwise RUN_DIR TASK_ID TARGET`: a cluster job's worker."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        sys.stderr.write("usage: python -m engine.blockwise RUN_DIR TASK_ID MODULE:FACTORY\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(Path(args[0]), args[1], args[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
