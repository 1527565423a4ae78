"""Stack in a real gunpowder pipeline: the batches of gp.Stack, seeded the same way."""

from __future__ import annotations

import gunpowder as gp
import numpy as np
import pytest
from funlib.persistence import Array

from engine.nodes import Stack


def stacked(stack: gp.BatchFilter, seed: int) -> np.ndarray:
    """A randomly augmented array, stacked by `stack`, for a request seeded `seed`."""
    key = gp.ArrayKey("STACK_RAW")
    data = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    pipeline = gp.ArraySource(key, Array(data, (0, 0, 0), (40, 4, 4)), interpolatable=True)
    pipeline += gp.IntensityAugment(key, 0.5, 1.5, -0.2, 0.2)
    pipeline += gp.SimpleAugment(transpose_only=[1, 2])
    pipeline += stack
    request = gp.BatchRequest(random_seed=seed)
    request[key] = gp.ArraySpec(roi=gp.Roi((80, 16, 16), (160, 64, 64)))
    with gp.build(pipeline):
        return pipeline.request_batch(request)[key].data


@pytest.mark.parametrize("repetitions", [1, 2])
def test_equals_gunpowder_stack(repetitions: int) -> None:
    ours = stacked(Stack(repetitions), seed=5)
    theirs = stacked(gp.Stack(repetitions), seed=5)
    assert ours.shape == (repetitions, 4, 16, 16)
    np.testing.assert_array_equal(ours, theirs)
    # the seed matters: another one gives another batch
    assert not np.array_equal(stacked(Stack(repetitions), seed=6), ours)
