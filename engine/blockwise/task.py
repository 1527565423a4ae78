"""What a blockwise task is made of, as plain declarations: its block grid, its stages,
what each worker is given (WorkerSpec) and what it runs (a BlockProcessor), how it ended,
and the run-directory folders the workers and the scheduler share. No daisy here."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.errors import EngineError

BLOCKS_DIR = "blocks"
WORKERS_DIR = "workers"
# In WORKERS_DIR while a run stops: daisy's replacement workers then end at once.
STOPPING = "STOPPING"

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
    executor: str = "local"  # a name in engine.blockwise.launchers.EXECUTORS
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


@dataclass(frozen=True)
class Stage:
    """One task of a blockwise run: its id, the worker factory, where done blocks are kept."""

    task_id: str
    target: str
    tracking_dir: Path


def safe_name(task_id: str) -> str:
    """`task_id` as it can stand in a file or job name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id)
