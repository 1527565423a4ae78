"""Training batches from worker processes to the trainer: shared memory against the pipe.

Two workers hand over batches shaped like the cremi preset's (raw 132x268x268 float32,
LSD and affinity targets and weights, labels: 196 MiB), each worker only copying a
batch it made once, so the transport alone is timed. Both transports run in the same
way (same workers, same warm-up, batches counted the same way), three times each,
alternating; the median batches per second of each is reported.

Last line: `prefetch shm_batches_per_s=<a> pipe_batches_per_s=<b> speedup=<a/b>`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.train.prefetch import Prefetcher

SHAPES: dict[str, tuple[tuple[int, ...], type]] = {
    "raw": ((1, 1, 132, 268, 268), np.float32),
    "gt_lsds": ((1, 10, 72, 144, 144), np.float32),
    "lsds_weights": ((1, 10, 72, 144, 144), np.float32),
    "gt_affs": ((1, 3, 72, 144, 144), np.float32),
    "affs_weights": ((1, 3, 72, 144, 144), np.float32),
    "labels": ((1, 72, 144, 144), np.uint64),
}
WORKERS, WARMUP, BATCHES, REPEATS = 2, 3, 20, 3


def _produce() -> Callable[[], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {k: rng.random(shape).astype(dtype) for k, (shape, dtype) in SHAPES.items()}
    return lambda: {k: v.copy() for k, v in arrays.items()}


def _rate(shared: bool) -> float:
    with Prefetcher(_produce, WORKERS, 4, shared_memory=shared) as prefetch:
        for _ in range(WARMUP):
            prefetch.get()
        start = time.perf_counter()
        for _ in range(BATCHES):
            batch: Any = prefetch.get()
            assert batch["raw"].shape == SHAPES["raw"][0]
        return BATCHES / (time.perf_counter() - start)


def main() -> None:
    size = sum(int(np.prod(s)) * np.dtype(t).itemsize for s, t in SHAPES.values())
    print(f"batch {size / 2**20:.0f} MiB, {WORKERS} workers, {BATCHES} batches after {WARMUP}")
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(REPEATS):
        for shared in (True, False):
            rates[shared].append(_rate(shared))
    shm, pipe = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"shm batches/s: {' '.join(f'{r:.2f}' for r in rates[True])}")
    print(f"pipe batches/s: {' '.join(f'{r:.2f}' for r in rates[False])}")
    print(
        f"prefetch shm_batches_per_s={shm:.2f} pipe_batches_per_s={pipe:.2f} "
        f"speedup={shm / pipe:.2f}"
    )


if __name__ == "__main__":
    main()
