"""BalanceLabels in a real gunpowder pipeline: the same weights as gp.BalanceLabels."""

from __future__ import annotations

import gunpowder as gp
import numpy as np
import pytest
from funlib.persistence import Array

from engine.errors import InputError
from engine.nodes import BalanceLabels
from engine.nodes.balance_labels import balance_weights

VOXEL = (40, 4, 4)


def weights(node_class: type, labels: np.ndarray, mask: np.ndarray | None, **kwargs: object):
    """The scales `node_class` makes for `labels` (and `mask`) over a ROI inside them."""
    keys = gp.ArrayKey("BALANCE_LABELS"), gp.ArrayKey("BALANCE_SCALES"), gp.ArrayKey("BALANCE_MASK")
    sources = [gp.ArraySource(keys[0], Array(labels, (0, 0, 0), VOXEL), interpolatable=False)]
    if mask is not None:
        sources.append(gp.ArraySource(keys[2], Array(mask, (0, 0, 0), VOXEL), interpolatable=False))
    pipeline = tuple(sources) + gp.MergeProvider()
    pipeline += node_class(keys[0], keys[1], None if mask is None else keys[2], **kwargs)
    request = gp.BatchRequest()
    request[keys[1]] = gp.ArraySpec(roi=gp.Roi((40, 8, 4), (160, 80, 96)))
    with gp.build(pipeline):
        scales = pipeline.request_batch(request)[keys[1]]
    assert scales.spec.roi == request[keys[1]].roi
    return scales.data


@pytest.mark.parametrize("mask_kind", ["random", "none", "empty"])
def test_binary_labels_equal_gunpowder(mask_kind: str) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((8, 32, 32)) < 0.2).astype(np.float32)
    mask = {
        "random": (rng.random(labels.shape) < 0.7).astype(np.float32),
        "none": None,
        "empty": np.zeros(labels.shape, np.float32),
    }[mask_kind]
    ours = weights(BalanceLabels, labels, mask)
    theirs = weights(gp.BalanceLabels, labels, mask)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)
    if mask_kind != "empty":
        # the rare class weighs more
        assert ours.max() > 1.0 and np.unique(ours[ours > 0]).size == 2


def test_three_classes_and_unclipped_equal_gunpowder() -> None:
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=(8, 32, 32), p=[0.9, 0.08, 0.02]).astype(np.uint8)
    mask = (rng.random(labels.shape) < 0.5).astype(np.uint8)
    for clip in ({}, {"clipmin": None, "clipmax": None}):
        ours = weights(BalanceLabels, labels, mask, num_classes=3, **clip)
        theirs = weights(gp.BalanceLabels, labels, mask, num_classes=3, **clip)
        np.testing.assert_array_equal(ours, theirs)


def test_labels_out_of_range_name_the_node() -> None:
    labels = np.full((8, 32, 32), 2, dtype=np.uint8)
    with pytest.raises(InputError, match=r"BalanceLabels: gt_affs must lie in \[0, 2\)"):
        balance_weights(labels, None, name="gt_affs")
