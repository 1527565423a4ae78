"""Training batches made ahead by worker processes, with a shutdown that cannot hang.

Each worker is a fork that runs `produce()` forever, putting results on a bounded
queue. Unlike gunpowder's PreCache (a watchdog process between the trainer and its
workers, joined at teardown), the trainer owns its workers directly and ends them with
SIGKILL: a SIGTERM to the whole process group, a full queue or a dead worker can then
never leave the trainer waiting forever in its own shutdown.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import random
import signal
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from engine.errors import EngineError

logger = logging.getLogger(__name__)

_POLL_S = 0.5


class Prefetcher:
    """`get()` returns the next item any worker produced; use as a context manager."""

    def __init__(
        self, produce: Callable[[], Callable[[], Any]], workers: int, cache_size: int
    ) -> None:
        """`produce()` runs once in each worker and returns the function making one item."""
        self._produce = produce
        self._workers = workers
        self._context = multiprocessing.get_context("fork")
        self._queue: Any = self._context.Queue(max(cache_size, 1))
        self._processes: list[Any] = []

    def __enter__(self) -> Prefetcher:
        parent = os.getpid()
        for _ in range(self._workers):
            process = self._context.Process(
                target=_work, args=(self._produce, self._queue, parent), daemon=True
            )
            process.start()
            self._processes.append(process)
        return self

    def get(self) -> Any:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p for p in self._processes if not p.is_alive()]
                if dead:
                    raise EngineError(
                        f"a batch worker died (exit code {dead[0].exitcode}): see the log above"
                    ) from None
                continue
            if isinstance(item, _Failure):
                raise EngineError(f"making a training batch failed:\n{item.text}")
            return item

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in self._processes:
            process.kill()
        for process in self._processes:
            process.join()
        self._processes.clear()
        # Items still in the pipe would make the queue's feeder thread block exit.
        self._queue.cancel_join_thread()
        self._queue.close()


class _Failure:
    def __init__(self, text: str) -> None:
        self.text = text


def _work(produce: Callable[[], Callable[[], Any]], out: Any, parent: int) -> None:
    # The trainer decides when workers stop: signals to the group are its business.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Forks share the parent's random state: without this every worker would make the
    # same batches.
    random.seed()
    np.random.seed()
    try:
        make = produce()
        while os.getppid() == parent:
            item = make()
            while os.getppid() == parent:
                try:
                    out.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
    except Exception:
        out.put(_Failure(traceback.format_exc()))
