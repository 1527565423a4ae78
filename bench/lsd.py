"""Benchmark compute_lsds against lsd_lite on one anisotropic label volume, in one run.

The volume: 24 x 96 x 96 voxels of 40 x 4 x 4 nm, 150 Voronoi cells (nearest random seed,
in voxel units, fixed seed), sigma 80 nm, at downsample 1 and at downsample 2 (where
training computes its targets). Both implementations are timed the same way: one
thread (BLAS and OpenMP), `REPEATS` runs each after a warm-up, alternating, the median
of the process' CPU seconds (on a loaded machine wall time mostly measures the load).

Run from the repository root: ``.venv/bin/python bench/lsd.py``. One line per
downsample factor, ``lsd downsample=<d> speedup_vs_lsd_lite=<ratio> max_abs_diff=<d>
mean_abs_diff=<d>``; the last line is downsample 1's, ``lsd speedup_vs_lsd_lite=<ratio>
max_abs_diff=<d> mean_abs_diff=<d>``.
"""

from __future__ import annotations

import os

# One thread: OpenMP and BLAS pools are sized when numpy and scipy load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics
import time

import lsd_lite
import numpy as np
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from engine.targets import compute_lsds

SHAPE = (24, 96, 96)
VOXEL_SIZE = (40, 4, 4)
SIGMA = 80.0
CELLS = 150
SEED = 0
REPEATS = 3
DOWNSAMPLES = (2, 1)


def voronoi_labels(shape: tuple[int, ...], cells: int, seed: int) -> np.ndarray:
    """uint64 labels 1..cells: each voxel takes the id of its nearest random seed."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, 1, (cells, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1)
    _, nearest = cKDTree(seeds).query(grid.reshape(-1, len(shape)))
    return (nearest + 1).reshape(shape).astype(np.uint64)


def compare(labels: np.ndarray, downsample: int) -> str:
    """Both implementations, `REPEATS` runs each after a warm-up, alternating so that
    both see the same load; CPU seconds of this (single-threaded) process, the median."""
    runs = (
        lambda: compute_lsds(labels, SIGMA, VOXEL_SIZE, downsample),
        lambda: lsd_lite.get_lsds(labels, SIGMA, VOXEL_SIZE, downsample=downsample),
    )
    ours, reference = (run() for run in runs)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS):
        for run, record in zip(runs, times, strict=True):
            start = time.process_time()
            run()
            record.append(time.process_time() - start)
    ours_times, reference_times = times
    print(f"downsample {downsample}")
    print("  compute_lsds cpu s: " + " ".join(f"{t:.3f}" for t in ours_times))
    print("  lsd_lite cpu s: " + " ".join(f"{t:.2f}" for t in reference_times))
    diff = np.abs(ours - reference)
    print("  max_abs_diff per channel: " + " ".join(f"{d:.1e}" for d in diff.max(axis=(1, 2, 3))))
    ratio = statistics.median(reference_times) / statistics.median(ours_times)
    return (
        f"speedup_vs_lsd_lite={ratio:.1f} max_abs_diff={diff.max():.2e} "
        f"mean_abs_diff={diff.mean():.2e}"
    )


def main() -> None:
    labels = voronoi_labels(SHAPE, CELLS, SEED)
    print(
        f"volume {SHAPE} voxel {VOXEL_SIZE} nm, {len(np.unique(labels))} labels, sigma {SIGMA}; "
        f"one thread, median CPU s of {REPEATS} alternating runs after one warm-up run"
    )
    with threadpool_limits(limits=1):
        results = {downsample: compare(labels, downsample) for downsample in DOWNSAMPLES}
    for downsample in DOWNSAMPLES:
        print(f"lsd downsample={downsample} {results[downsample]}")
    print(f"lsd {results[1]}")


if __name__ == "__main__":
    main()
