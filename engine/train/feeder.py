"""Training batches as tensors on the training device, and the time spent waiting.

With batch workers, a thread takes each batch off the workers' queue (unpickling tens
of MB for the cremi geometry), turns it into tensors and pins them (page-locked host
memory) while the GPU computes the previous iteration; the training loop then only
issues an asynchronous copy. Without workers a batch is made on request, in the loop.
Either way `waited` sums the seconds the loop spent blocked on data: the `data_wait`
share of each logging interval (engine.train.trainer) says whether the GPU is starved.
"""

from __future__ import annotations

import queue
import threading
import time
from types import TracebackType
from typing import Any

import numpy as np
import torch

_AHEAD = 2  # batches held ready on the host: one more costs memory, gains nothing
_POLL_S = 0.2
_STOP_WAIT_S = 30.0


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class DeviceFeeder:
    """`next()` returns (the numpy batch, its arrays as tensors on `device`).

    `labels` stays numpy only (uint64, for snapshots). `raw` gets the channels-last
    memory format when `channels_last` is set. Use as a context manager inside the
    pipeline's `with` block.
    """

    def __init__(
        self, pipeline: Any, device: torch.device, channels_last: bool, ahead: bool
    ) -> None:
        self._pipeline = pipeline
        self._device = device
        self._pin = device.type == "cuda"
        self._channels_last = channels_last
        self._ahead = ahead
        self._queue: queue.Queue[Any] = queue.Queue(_AHEAD)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waited = 0.0

    def __enter__(self) -> DeviceFeeder:
        if self._ahead:
            self._thread = threading.Thread(target=self._fill, name="batch-feeder", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            # It may be blocked on a full queue: make room until it sees the flag.
            deadline = time.monotonic() + _STOP_WAIT_S
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(_POLL_S)

    def next(self) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
        start = time.perf_counter()
        if self._ahead:
            item = self._queue.get()
            if isinstance(item, _Failed):
                raise item.exc
            batch, host = item
        else:
            batch = self._pipeline.next_batch()
            host = self._host(batch)
        tensors = {k: v.to(self._device, non_blocking=self._pin) for k, v in host.items()}
        if self._channels_last and tensors["raw"].dim() in (4, 5):
            layout = torch.channels_last_3d if tensors["raw"].dim() == 5 else torch.channels_last
            tensors["raw"] = tensors["raw"].contiguous(memory_format=layout)
        self.waited += time.perf_counter() - start
        return batch, tensors

    def _host(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The batch's arrays as tensors (pinned copies for a GPU). With copies, `batch`
        keeps views of them in place of its arrays: the shared memory the batch came in
        is then unmapped here, on the feeder's thread, and not on the training loop's
        when it drops the batch (for a cremi batch, 20-50 ms of a thread here)."""
        host = {k: torch.as_tensor(v) for k, v in batch.items() if k != "labels"}
        if self._pin:
            host = {k: v.pin_memory() for k, v in host.items()}
            batch.update({k: v.numpy() for k, v in host.items()})
        return host

    def _fill(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._pipeline.next_batch()
                item: Any = (batch, self._host(batch))
            except BaseException as exc:  # handed to the loop, which decides
                item = _Failed(exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failed):
                return
