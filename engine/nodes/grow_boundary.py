"""Gunpowder node: background between objects, gp.GrowBoundary's result for all labels at
once; its kernel, `grow_boundary`, is a plain function on arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gunpowder as gp
import numpy as np


class GrowBoundary(gp.BatchFilter):
    """Set to 0 the labels within `steps` voxels of another label: gp.GrowBoundary's
    result, computed for all labels at once and over the whole labels array.

    Reads:
        labels: integer labels (updated in place).
        mask (optional): 1 where the labels are known; a masked-out voxel never
            erodes a neighbour (as in gp.GrowBoundary). Where the labels' ROI reaches
            beyond the mask's (the context the LSDs read around their output), the
            labels count as known.

    gp.GrowBoundary erodes every label separately (one pass over the array per label)
    and only where the mask is given, which left the LSDs' context ungrown.
    """

    def __init__(
        self,
        labels: gp.ArrayKey,
        mask: gp.ArrayKey | None = None,
        steps: int = 1,
        only_xy: bool = False,
    ):
        self.labels = labels
        self.mask = mask
        self.steps = steps
        self.only_xy = only_xy

    def setup(self) -> None:
        self.enable_autoskip()
        self.updates(self.labels, self.spec[self.labels].copy())

    def prepare(self, request: gp.BatchRequest) -> gp.BatchRequest:
        deps = gp.BatchRequest()
        deps[self.labels] = request[self.labels].copy()
        if self.mask is not None and self.mask in request:
            deps[self.mask] = request[self.mask].copy()
        return deps

    def process(self, batch: gp.Batch, request: gp.BatchRequest) -> None:
        labels = batch[self.labels]
        known = np.ones(labels.data.shape, dtype=bool)
        if self.mask is not None and self.mask in batch:
            mask = batch[self.mask]
            shared = mask.spec.roi.intersect(labels.spec.roi)
            if not shared.empty:
                voxel_size = labels.spec.voxel_size
                in_labels = ((shared - labels.spec.roi.begin) / voxel_size).to_slices()
                in_mask = ((shared - mask.spec.roi.begin) / voxel_size).to_slices()
                known[in_labels] = mask.data[in_mask] != 0
        labels.data = grow_boundary(labels.data, known, self.steps, self.only_xy)


def grow_boundary(
    labels: np.ndarray, known: np.ndarray, steps: int, only_xy: bool = False
) -> np.ndarray:
    """Labels with 0 wherever gp.GrowBoundary(steps, only_xy) would put background.

    A known voxel keeps its label if every known voxel within `steps` face-steps
    (in-plane only with `only_xy`) has the same label, and it is not 0. An unknown
    voxel keeps its label if the known voxels within reach share one label other than
    0, or if there are none and its section (`only_xy`) or array holds any label.
    Voxels beyond the array count as unknown. (The largest value of the dtype is used
    as a marker: a label of that value would be taken for "no known voxel".)
    """
    if steps < 1 or labels.size == 0:
        return labels
    axes = range(labels.ndim - 2, labels.ndim) if only_xy else range(labels.ndim)
    keep = _uniform_within(labels, axes, steps)
    unknown = ~known
    if unknown.any():
        # Only voxels within reach of an unknown one can differ from the all-known
        # answer: redo those, from a box grown once more by the reach for their inputs.
        grow = [steps if axis in axes else 0 for axis in range(labels.ndim)]
        nonzero = labels != 0
        any_label = nonzero.any(axis=(-2, -1), keepdims=True) if only_xy else nonzero.any()
        inner = _box(unknown, grow, 1)
        outer = _box(unknown, grow, 2)
        local = tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))
        if only_xy:
            any_label = any_label[outer[0]]
        redo = _uniform_known_within(labels[outer], known[outer], axes, steps, any_label)
        keep[inner] = redo[local]
    return np.where(keep, labels, 0).astype(labels.dtype, copy=False)


def _box(where: np.ndarray, grow: Sequence[int], times: int) -> tuple[slice, ...]:
    """The bounding box of `where`, grown by `grow` voxels `times` times, in the array."""
    box = []
    for axis, n in enumerate(where.shape):
        others = tuple(a for a in range(where.ndim) if a != axis)
        hits = np.flatnonzero(where.any(axis=others))
        reach = grow[axis] * times
        box.append(slice(max(int(hits[0]) - reach, 0), min(int(hits[-1]) + 1 + reach, n)))
    return tuple(box)


def _uniform_within(labels: np.ndarray, axes: Sequence[int], steps: int) -> np.ndarray:
    """Where every voxel within `steps` face-steps has the voxel's label, not 0.

    By induction on the reach: true at v for `steps` iff true at v for one step and
    at each face neighbour for `steps` - 1. Boolean passes only, no per-label work.
    """
    one = labels != 0
    for axis in axes:
        first, rest = _halves(labels.ndim, axis)
        equal = labels[first] == labels[rest]
        one[first] &= equal
        one[rest] &= equal
    within = one
    for _ in range(steps - 1):
        previous = within
        within = one.copy()
        for axis in axes:
            first, rest = _halves(labels.ndim, axis)
            within[first] &= previous[rest]
            within[rest] &= previous[first]
    result: np.ndarray = within
    return result


def _uniform_known_within(
    labels: np.ndarray,
    known: np.ndarray,
    axes: Sequence[int],
    steps: int,
    any_label: np.ndarray | bool,
) -> np.ndarray:
    """`grow_boundary`'s keep mask with unknown voxels: from the smallest and the
    largest known label within reach (exact on uint64, unlike scipy's rank filters)."""
    top = np.iinfo(labels.dtype).max
    low = np.where(known, labels, top).astype(labels.dtype, copy=False)
    high = np.where(known, labels, 0).astype(labels.dtype, copy=False)
    for _ in range(steps):
        low = _spread(low, axes, np.minimum)
        high = _spread(high, axes, np.maximum)
    keep = (low == high) & (high != 0)
    keep |= ~known & (low == top) & any_label
    result: np.ndarray = keep
    return result


def _halves(ndim: int, axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index of all voxels but the last, and of all but the first, along `axis`."""
    first = [slice(None)] * ndim
    rest = [slice(None)] * ndim
    first[axis], rest[axis] = slice(None, -1), slice(1, None)
    return tuple(first), tuple(rest)


def _spread(values: np.ndarray, axes: Sequence[int], op: Any) -> np.ndarray:
    """`op` (np.minimum or np.maximum) of each voxel and its face neighbours along `axes`."""
    out = values.copy()
    for axis in axes:
        first, rest = _halves(values.ndim, axis)
        op(out[first], values[rest], out=out[first])
        op(out[rest], values[first], out=out[rest])
    return out
