"""Gunpowder node: gp.ArraySource with its dask reads in the calling thread (fork-safe)."""

from __future__ import annotations

import dask
import gunpowder as gp


class SyncArraySource(gp.ArraySource):
    """gp.ArraySource reading in the calling thread.

    Provides the array of a funlib.persistence Array, as gp.ArraySource does. Those
    arrays are dask arrays, and dask's default scheduler runs reads on a thread pool
    that does not survive a fork: the batch workers, forked after the first reads,
    would wait forever on it. Synchronous reads also suit those single-threaded workers.
    """

    def provide(self, request: gp.BatchRequest) -> gp.Batch:
        with dask.config.set(scheduler="synchronous"):
            return super().provide(request)
