"""Benchmark compute_lsds against lsd_lite on one anisotropic label volume, in one run.

The volume: 24 x 96 x 96 voxels of 40 x 4 x 4 nm, 150 Voronoi cells (nearest random seed,
in voxel units, fixed seed), sigma 80 nm, downsample 1. Ours is timed as the best of a
few repeats, lsd_lite once (it takes about a minute).

Run from the repository root: ``.venv/bin/python bench/lsd.py``. The last line is
``lsd speedup_vs_lsd_lite=<ratio> max_abs_diff=<d> mean_abs_diff=<d>``.
"""

from __future__ import annotations

import time

import lsd_lite
import numpy as np
from scipy.spatial import cKDTree

from engine.targets import compute_lsds

SHAPE = (24, 96, 96)
VOXEL_SIZE = (40, 4, 4)
SIGMA = 80.0
CELLS = 150
SEED = 0
REPEATS = 5


def voronoi_labels(shape: tuple[int, ...], cells: int, seed: int) -> np.ndarray:
    """uint64 labels 1..cells: each voxel takes the id of its nearest random seed."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, 1, (cells, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1)
    _, nearest = cKDTree(seeds).query(grid.reshape(-1, len(shape)))
    return (nearest + 1).reshape(shape).astype(np.uint64)


def main() -> None:
    labels = voronoi_labels(SHAPE, CELLS, SEED)
    print(f"volume {SHAPE} voxel {VOXEL_SIZE} nm, {len(np.unique(labels))} labels, sigma {SIGMA}")

    ours_times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        ours = compute_lsds(labels, SIGMA, VOXEL_SIZE, downsample=1)
        ours_times.append(time.perf_counter() - start)
    ours_best = min(ours_times)
    print("compute_lsds s: " + " ".join(f"{t:.3f}" for t in ours_times))

    start = time.perf_counter()
    reference = lsd_lite.get_lsds(labels, SIGMA, VOXEL_SIZE, downsample=1)
    reference_time = time.perf_counter() - start
    print(f"lsd_lite s: {reference_time:.2f}")

    diff = np.abs(ours - reference)
    print("max_abs_diff per channel: " + " ".join(f"{d:.1e}" for d in diff.max(axis=(1, 2, 3))))
    print(
        f"lsd speedup_vs_lsd_lite={reference_time / ours_best:.1f} "
        f"max_abs_diff={diff.max():.2e} mean_abs_diff={diff.mean():.2e}"
    )


if __name__ == "__main__":
    main()
