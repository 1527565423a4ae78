"""Training batches made ahead by worker processes, with a shutdown that cannot hang.

Each worker is a fork that runs `produce()` forever, putting results on a bounded
queue. Unlike gunpowder's PreCache (a watchdog process between the trainer and its
workers, joined at teardown), the trainer owns its workers directly and ends them with
SIGKILL: a SIGTERM to the whole process group, a full queue or a dead worker can then
never leave the trainer waiting forever in its own shutdown.

The arrays of an item travel through shared memory (as torch tensors, the way torch's
DataLoader moves them), not through the queue's pipe: a cremi batch is about 200 MB,
and pickling it through one pipe capped training on an H200 at 2.1 batches/s with 16
workers (data_wait 0.67); bench/prefetch.py measures the two transports.
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
# Shared memory lives in /dev/shm; a container's default of 64 MB would end a worker
# with SIGBUS mid-batch, so below this much free space items go through the pipe.
_SHM_MIN_FREE = 2 * 2**30


class Prefetcher:
    """`get()` returns the next item any worker produced; use as a context manager."""

    def __init__(
        self,
        produce: Callable[[], Callable[[], Any]],
        workers: int,
        cache_size: int,
        shared_memory: bool | None = None,
    ) -> None:
        """`produce()` runs once in each worker and returns the function making one item
        (a dict of numpy arrays travels through shared memory; anything else is pickled).
        `shared_memory`: None = where /dev/shm has room (see _SHM_MIN_FREE)."""
        self._produce = produce
        self._workers = workers
        self.shared_memory = _shm_has_room() if shared_memory is None else shared_memory
        if self.shared_memory:
            # Registers the reductions that put tensors into shared memory when pickled.
            import torch.multiprocessing  # noqa: F401
        elif shared_memory is None:
            logger.warning(
                "/dev/shm has less than %d GiB free: batches go through a pipe (slower); "
                "give the container more shared memory (docker --shm-size)",
                _SHM_MIN_FREE // 2**30,
            )
        self._context = multiprocessing.get_context("fork")
        self._queue: Any = self._context.Queue(max(cache_size, 1))
        self._processes: list[Any] = []

    def __enter__(self) -> Prefetcher:
        parent = os.getpid()
        for _ in range(self._workers):
            process = self._context.Process(
                target=_work,
                args=(self._produce, self._queue, parent, self.shared_memory),
                daemon=True,
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
            return _from_shared(item) if self.shared_memory else item

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


def _shm_has_room() -> bool:
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= _SHM_MIN_FREE


def _to_shared(item: Any) -> Any:
    """A dict's numpy arrays as tensors on the same memory (pickling then moves them to
    shared memory, one copy, in the worker)."""
    if not isinstance(item, dict):
        return item
    import torch

    def shared(value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            return value
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError:  # a dtype torch has no tensor for: pickled as it is
            return value

    return {k: shared(v) for k, v in item.items()}


def _from_shared(item: Any) -> Any:
    """Numpy views of the tensors `_to_shared` made (no copy; the shared memory is freed
    with the last view)."""
    if not isinstance(item, dict):
        return item
    import torch

    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in item.items()}


def _work(produce: Callable[[], Callable[[], Any]], out: Any, parent: int, shared: bool) -> None:
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
            item = _to_shared(make()) if shared else make()
            while os.getppid() == parent:
                try:
                    out.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
    except Exception:
        out.put(_Failure(traceback.format_exc()))
