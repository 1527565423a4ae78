"""MaskedRandomLocation: gunpowder's min_masked draws, through its public accepts hook."""

from __future__ import annotations

import itertools

import gunpowder as gp
import numpy as np
import pytest
from funlib.persistence import Array

from engine.errors import InputError
from engine.nodes import MaskedRandomLocation
from engine.nodes.random_location import box_sum, integral_image

RAW = gp.ArrayKey("RL_RAW")
MASK = gp.ArrayKey("RL_MASK")


def test_integral_counts_every_box() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((5, 7, 6)) > 0.6
    integral = integral_image(mask)
    assert integral.dtype == np.uint16
    for begin in itertools.product(range(0, 5, 2), range(0, 7, 3), range(0, 6, 2)):
        for shape in ((1, 1, 1), (2, 3, 4), (3, 4, 2)):
            end = tuple(min(b + s, n) for b, s, n in zip(begin, shape, mask.shape))
            box = tuple(slice(b, e) for b, e in zip(begin, end))
            assert box_sum(integral, begin, end) == int(mask[box].sum())


def _shifts(node: gp.BatchFilter, mask: np.ndarray, seeds: range) -> list[tuple[int, ...]]:
    """The random shift `node` picks for a 10 x 10 request, one per seed."""
    sources = (
        gp.ArraySource(RAW, Array(mask.astype(np.float32), (0, 0), (2, 2))),
        gp.ArraySource(MASK, Array(mask, (0, 0), (2, 2)), interpolatable=False),
    )
    pipeline = sources + gp.MergeProvider() + node
    shifts = []
    with gp.build(pipeline):
        for seed in seeds:
            request = gp.BatchRequest(random_seed=seed)
            request[RAW] = gp.ArraySpec(roi=gp.Roi((0, 0), (20, 20)))
            request[MASK] = gp.ArraySpec(roi=gp.Roi((0, 0), (20, 20)))
            batch = pipeline.request_batch(request)
            shifts.append(tuple(node.random_shift))
            labelled = batch[MASK].data.mean()
            assert labelled >= 0.5
    return shifts


def test_same_locations_as_gunpowder_min_masked() -> None:
    """Seed for seed, the location gp.RandomLocation(min_masked, mask) picks."""
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[5:30, 12:38] = 1
    seeds = range(12)
    ours = _shifts(MaskedRandomLocation(MASK, 0.5, "the test mask", 10_000), mask, seeds)
    theirs = _shifts(gp.RandomLocation(min_masked=0.5, mask=MASK), mask, seeds)
    assert ours == theirs
    assert len(set(ours)) > 3  # it does move


def test_gives_up_naming_the_source() -> None:
    """gunpowder alone would draw forever on a mask of zeros."""
    mask = np.zeros((40, 40), dtype=np.uint8)
    with pytest.raises(Exception, match="no sample of the test mask has 50% labelled") as info:
        _shifts(MaskedRandomLocation(MASK, 0.5, "the test mask", 200), mask, range(1))
    cause: BaseException | None = info.value
    while cause is not None and not isinstance(cause, InputError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, InputError)
