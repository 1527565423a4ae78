"""Gunpowder node: a random location with enough labelled voxels, or a clear error."""

from __future__ import annotations

import itertools
import logging

import gunpowder as gp
import numpy as np
from funlib.geometry import Coordinate, Roi

from engine.errors import InputError

logger = logging.getLogger(__name__)


class MaskedRandomLocation(gp.RandomLocation):  # type: ignore[misc]
    """gp.RandomLocation whose samples hold at least `min_masked` of masked-in voxels,
    giving up with an InputError naming `source` after `max_draws` locations.

    gunpowder's own `min_masked` draws locations forever when none qualifies (a mask of
    zeros, a sample larger than the labelled region). Here the ratio is checked in
    `accepts`, the hook gp.RandomLocation documents for subclasses, and gp.RandomLocation
    itself gets no mask: every draw passes through `accepts`, and is counted there. The
    draws are those gunpowder's `min_masked` makes (same random calls, same ratio test).

    Reads:
        mask: the whole array once, in setup (over the ROI upstream provides, padding
            included), kept as an integral image of mask > 0; it must be requested
            with every batch (its ROI is the one whose ratio counts).

    Provides:
        what upstream provides, at a random location (as gp.RandomLocation).

    Args:
        mask: the array whose masked-in (> 0) voxels are counted.
        min_masked: the least ratio of masked-in voxels in the mask's requested ROI;
            0 accepts every location.
        source: what the error names (the training volume).
        max_draws: locations drawn for one batch before giving up.
    """

    def __init__(self, mask: gp.ArrayKey, min_masked: float, source: str, max_draws: int) -> None:
        super().__init__()
        self.ratio_mask = mask
        self.min_ratio = min_masked
        self.source = source
        self.max_draws = max_draws
        self._integral: np.ndarray | None = None
        self._mask_roi: Roi | None = None
        self._mask_voxel_size: Coordinate | None = None
        self._draws = 0

    def setup(self) -> None:
        if self.min_ratio > 0:
            upstream = self.get_upstream_provider()
            if self.ratio_mask not in upstream.spec:
                raise InputError(
                    f"MaskedRandomLocation: upstream does not provide the mask {self.ratio_mask}"
                )
            spec = upstream.spec.array_specs[self.ratio_mask].copy()
            logger.info("reading all of %s for min_masked", self.ratio_mask)
            batch = upstream.request_batch(gp.BatchRequest({self.ratio_mask: spec}))
            self._integral = integral_image(batch.arrays[self.ratio_mask].data > 0)
            self._mask_roi = spec.roi
            self._mask_voxel_size = spec.voxel_size
        super().setup()

    def prepare(self, request: gp.BatchRequest) -> gp.BatchRequest:
        self._draws = 0
        if self.min_ratio > 0 and self.ratio_mask not in request.array_specs:
            raise InputError(
                f"MaskedRandomLocation: the request has no {self.ratio_mask} to count "
                "masked-in voxels in"
            )
        return super().prepare(request)

    def accepts(self, request: gp.BatchRequest) -> bool:
        """Whether the mask's ROI of the shifted `request` is masked-in enough."""
        if self.min_ratio <= 0:
            return True
        self._draws += 1
        if self._draws > self.max_draws:
            raise InputError(
                f"no sample of {self.source} has {self.min_ratio:.0%} labelled voxels "
                f"(preprocess.min_masked) in {self.max_draws} random locations: check its "
                "labels_mask, lower preprocess.min_masked or train on other volumes"
            )
        assert self._integral is not None and self._mask_roi is not None
        voxels = request.array_specs[self.ratio_mask].roi / self._mask_voxel_size
        voxels -= self._mask_roi.offset / self._mask_voxel_size
        ratio = box_sum(self._integral, voxels.begin, voxels.end) / voxels.size
        logger.debug("mask ratio is %f", ratio)
        return bool(ratio >= self.min_ratio)


def integral_image(mask: np.ndarray) -> np.ndarray:
    """Cumulative sums of `mask` over every axis, with a leading row of zeros per axis:
    entry i holds the number of true voxels in mask[:i]. The integer type is the
    smallest that holds the count (as gunpowder chooses), to keep whole volumes small."""
    dtype = np.uint16 if mask.size < 2**16 else np.uint32 if mask.size < 2**32 else np.uint64
    integral = np.zeros(tuple(n + 1 for n in mask.shape), dtype=dtype)
    integral[(slice(1, None),) * mask.ndim] = mask
    for axis in range(mask.ndim):
        np.cumsum(integral, axis=axis, out=integral)
    return integral


def box_sum(integral: np.ndarray, begin: tuple[int, ...], end: tuple[int, ...]) -> int:
    """The number of true voxels in mask[begin:end], from `integral_image(mask)`."""
    total = 0
    for corner in itertools.product((0, 1), repeat=len(begin)):
        index = tuple(e if high else b for high, b, e in zip(corner, begin, end))
        sign = -1 if (len(begin) - sum(corner)) % 2 else 1
        total += sign * int(integral[index])
    return total
