"""Tiles from several threads, gathered into batches for one forward pass on a thread of its own.

A predict worker serves several blocks at once (engine.blockwise lanes): while the
device runs one batch, other threads read the raw of the next blocks and write the
outputs of the last ones. Each of them hands its block's tiles to `run` and waits; the
batcher's thread takes tiles in arrival order, fills a batch, calls the forward and
hands every caller its results. Tiles of one block may span batches.

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
# How long a short batch waits for more tiles before the first forward has been timed.
_FIRST_PATIENCE_S = 0.05


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
        self.busy_s = 0.0
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

    def _take(self) -> list[tuple[_Job, int]] | None:
        """The next batch, once it should go; None when closed and drained."""
        with self._cond:
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
        while (taken := self._take()) is not None:
            start = time.monotonic()
            try:
                results = self.forward([job.tiles[i] for job, i in taken])
            except BaseException as exc:  # every caller of the batch gets it
                logger.warning("a batch of %d tiles failed: %s", len(taken), exc)
                results = None
                error: BaseException | None = exc
            else:
                error = None
            seconds = time.monotonic() - start
            self.busy_s += seconds
            self.batches += 1
            # A batch that waits longer than a forward for its last tiles loses more
            # than it gains.
            self._patience = max(seconds, 0.001)
            for k, (job, i) in enumerate(taken):
                if error is not None:
                    job.error = error
                else:
                    assert results is not None
                    job.results[i] = results[k]
                job.remaining -= 1
                if job.remaining == 0 or error is not None:
                    job.done.set()
