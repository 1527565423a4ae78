"""Tiles from several threads, gathered into batches for one forward pass on a thread of its own.

A predict worker serves several blocks at once (engine.blockwise lanes): while the
device runs one batch, other threads read the raw of the next blocks and write the
outputs of the last ones. Each of them hands its block's tiles to `run` and waits; the
batcher's thread takes tiles in arrival order, fills a batch, calls the forward and
hands every caller its results. Tiles of one block may span batches.

On a GPU the batcher keeps the device fed: while a batch runs it waits for a full next
one and queues it behind the running one (the forward's `submit`) before it hands out
the results of the first, so the device goes from one batch to the next without
waiting for the host to copy results out, hand them over and stage the next tiles.
Once the running batch is done with no full batch waiting, its results go out first:
the missing tiles may be those of lanes waiting on them.

A batch goes as soon as it is full, or when every lane is waiting on it (nothing more
can come), or when tiles stop coming for about one forward pass (lanes finishing
near the end of a task): a short batch is padded by the forward, which gives the same
per-tile results whatever the grouping (engine.predict.tile_forward).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

Forward = Callable[[Sequence[np.ndarray]], list[Any]]
"""Tiles to their results; one with a `submit(tiles)` method whose return value has a
`result()` (engine.predict.tile_forward.TileForward) is run one batch ahead."""
# How long a short batch waits for more tiles before the first forward has been timed.
_FIRST_PATIENCE_S = 0.05
# How often the batcher looks whether the running batch is done, while it waits for
# enough tiles to queue the next one behind it.
_RUNNING_POLL_S = 0.002


@dataclass
class _Job:
    """One caller's tiles and, once computed, their results."""

    tiles: Sequence[np.ndarray]
    results: list[Any] = field(default_factory=list)
    remaining: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.tiles)
        self.remaining = len(self.tiles)


class TileBatcher:
    """Runs `forward` (a TileForward) on batches of up to `batch` tiles from `lanes`
    calling threads. `close()` ends its thread."""

    def __init__(self, forward: Forward, batch: int, lanes: int) -> None:
        self.forward = forward
        self.batch = batch
        self.lanes = lanes
        self._queue: deque[tuple[_Job, int]] = deque()
        self._cond = threading.Condition()
        self._waiting = 0
        self._closed = False
        self._patience = _FIRST_PATIENCE_S
        self.batches = 0
        # In the forward's calls, this thread's wall and CPU seconds: wall well above
        # CPU on the CPU means the thread waited for the GIL or a core.
        self.forward_s = 0.0
        self.forward_cpu_s = 0.0
        self._thread = threading.Thread(target=self._loop, name="tile-batcher", daemon=True)
        self._thread.start()

    def run(self, tiles: Sequence[np.ndarray]) -> list[Any]:
        """The forward's result for each of `tiles`; raises what the forward raised."""
        if not tiles:
            return []
        job = _Job(tiles)
        with self._cond:
            if self._closed:
                raise RuntimeError("the tile batcher is closed")
            self._queue.extend((job, i) for i in range(len(tiles)))
            self._waiting += 1
            self._cond.notify_all()
        try:
            job.done.wait()
        finally:
            with self._cond:
                self._waiting -= 1
        if job.error is not None:
            raise job.error
        return job.results

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _take(self, running: _Batch | None = None) -> list[tuple[_Job, int]] | None:
        """The next batch, once it should go; None when closed and drained. While
        `running` runs, a full batch, or a short one when every lane waits (no more tiles
        can come before results go out), and [] once `running` is done: the tiles still
        to come may wait on its results."""
        with self._cond:
            if running is not None:
                while len(self._queue) < self.batch:
                    if running.ready() or (self._closed and not self._queue):
                        return None if self._closed and not self._queue else []
                    if self._queue and self._waiting >= self.lanes:
                        return [self._queue.popleft() for _ in range(len(self._queue))]
                    # Tiles wake this up; the device's end of the batch does not.
                    self._cond.wait(_RUNNING_POLL_S)
                return [self._queue.popleft() for _ in range(self.batch)]
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self._patience
            while len(self._queue) < self.batch and self._waiting < self.lanes:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            n = min(self.batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        running: _Batch | None = None
        while (taken := self._take(running)) is not None or running:
            queued = self._submit(taken) if taken else None
            if running is not None:
                self._finish(running)
            running = queued

    def _submit(self, taken: list[tuple[_Job, int]]) -> _Batch:
        batch = _Batch(taken, time.monotonic())
        tiles = [job.tiles[i] for job, i in taken]
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            submit = getattr(self.forward, "submit", None)
            if submit is not None:
                batch.pending = submit(tiles)
            else:
                batch.results = self.forward(tiles)
        except BaseException as exc:  # every caller of the batch gets it
            batch.error = exc
        self.forward_s += time.monotonic() - wall
        self.forward_cpu_s += time.thread_time() - cpu
        return batch

    def _finish(self, batch: _Batch) -> None:
        """Wait for `batch`'s results and hand them to their callers."""
        results = batch.results
        if batch.pending is not None:
            wall, cpu = time.monotonic(), time.thread_time()
            try:
                results = batch.pending.result()
            except BaseException as exc:
                batch.error = exc
            self.forward_s += time.monotonic() - wall
            self.forward_cpu_s += time.thread_time() - cpu
        if batch.error is not None:
            logger.warning("a batch of %d tiles failed: %s", len(batch.taken), batch.error)
        seconds = time.monotonic() - batch.started
        self.batches += 1
        # A batch that waits longer than a forward for its last tiles loses more than
        # it gains (a batch queued behind another counts both: an upper bound).
        self._patience = max(seconds, 0.001)
        for k, (job, i) in enumerate(batch.taken):
            if batch.error is not None:
                job.error = batch.error
            else:
                assert results is not None
                job.results[i] = results[k]
            job.remaining -= 1
            if job.remaining == 0 or batch.error is not None:
                job.done.set()


@dataclass
class _Batch:
    """Tiles on their way through the forward."""

    taken: list[tuple[_Job, int]]
    started: float
    pending: Any = None
    results: list[Any] | None = None
    error: BaseException | None = None

    def ready(self) -> bool:
        """Whether its results can be taken without waiting."""
        ready = getattr(self.pending, "ready", None)
        return self.pending is None or ready is None or bool(ready())
