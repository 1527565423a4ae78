"""GrowBoundary's kernel against gunpowder's GrowBoundary (its reference)."""

from __future__ import annotations

import gunpowder as gp
import numpy as np

from engine.nodes.grow_boundary import grow_boundary


def test_grow_boundary_equals_gunpowder() -> None:
    rng = np.random.default_rng(0)
    reference = gp.GrowBoundary(gp.ArrayKey("GROW_REFERENCE"))
    for _ in range(150):
        dims = int(rng.choice([2, 3]))
        shape = tuple(int(n) for n in rng.integers(3, 10, dims))
        labels = rng.integers(0, 4, shape).astype(np.uint64) * np.uint64(2**40)
        labels = np.repeat(labels + rng.integers(0, 2, shape).astype(np.uint64), 2, axis=-1)
        steps = int(rng.integers(1, 3))
        only_xy = bool(dims == 3 and rng.random() < 0.5)
        kind = rng.integers(0, 3)
        if kind == 0:
            mask = np.ones(labels.shape, np.uint8)
        elif kind == 1:
            mask = (rng.random(labels.shape) < 0.7).astype(np.uint8)
        else:
            mask = np.ones(labels.shape, np.uint8)
            mask[tuple(slice(int(rng.integers(0, n)), None) for n in labels.shape)] = 0
        reference.steps = steps
        expected = labels.copy()
        reference._GrowBoundary__grow(expected, mask, only_xy)
        np.testing.assert_array_equal(grow_boundary(labels, mask != 0, steps, only_xy), expected)
