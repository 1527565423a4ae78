"""Pad in a real gunpowder pipeline: gp.Pad's arrays, inside the volume and across it."""

from __future__ import annotations

import gunpowder as gp
import numpy as np
import pytest
from funlib.persistence import Array

from engine.nodes import Pad

VOXEL = (40, 4, 4)


def padded(pad_class: type, roi: gp.Roi, size: gp.Coordinate | None) -> np.ndarray:
    key = gp.ArrayKey("PAD_LABELS")
    data = np.random.default_rng(0).integers(1, 2**40, (8, 32, 32), dtype=np.uint64)
    pipeline = gp.ArraySource(key, Array(data, (0, 0, 0), VOXEL), interpolatable=False)
    pipeline += pad_class(key, size)
    request = gp.BatchRequest()
    request[key] = gp.ArraySpec(roi=roi)
    with gp.build(pipeline):
        array = pipeline.request_batch(request)[key]
    assert array.spec.roi == roi
    return array.data


@pytest.mark.parametrize("size", [None, gp.Coordinate(80, 16, 16)])
@pytest.mark.parametrize(
    "roi",
    [
        gp.Roi((40, 8, 8), (160, 64, 64)),  # inside: passed on
        gp.Roi((-80, -16, 100), (240, 64, 40)),  # across the border: padded with 0
    ],
)
def test_equals_gunpowder_pad(roi: gp.Roi, size: gp.Coordinate | None) -> None:
    ours = padded(Pad, roi, size)
    np.testing.assert_array_equal(ours, padded(gp.Pad, roi, size))
    assert ours.shape == tuple(roi.shape / gp.Coordinate(VOXEL))
    assert (ours == 0).any() == (roi.begin[0] < 0)
