"""Gunpowder node that adds LSD targets computed from labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import gunpowder as gp
import numpy as np
from funlib.geometry import Coordinate, Roi

from engine.errors import InputError
from engine.targets.lsds import compute_lsds, gaussian_radius, lsd_channels

logger = logging.getLogger(__name__)


class AddLsds(gp.BatchFilter):  # type: ignore[misc]
    """Add Local Shape Descriptors of `labels` (see `engine.targets.lsds.compute_lsds`).

    Reads:
        labels: integer labels (spatial axes only), 0 is background. Requested over the
            LSD ROI grown by the Gaussian's reach, so that LSDs at the border of the
            request are those of the whole upstream volume, clipped to what upstream
            provides (labels beyond it count as background).
        labels_mask (optional): 1 where the labels are valid; read over the
            `lsds_mask` ROI, only when `lsds_mask` is requested.

    Provides:
        lsds: float32 (C, *spatial), C = 10 in 3D, 6 in 2D, on the labels' voxel grid.
        lsds_mask (optional): float32 (C, *spatial), 1 where labels != 0 (and
            labels_mask != 0 if given), else 0; the same value on every channel, so it
            can scale an LSD loss directly.

    Args:
        labels: the label array to read.
        lsds: the LSD array to provide.
        sigma: Gaussian sigma in world units, one value or one per spatial axis.
        downsample: compute the statistics on every `downsample`-th voxel (see
            `compute_lsds`). The downsampled grid is anchored at the start of the
            upstream labels ROI (at the world origin if upstream is unbounded), so a
            batch gets the LSDs the whole volume would get.
        lsds_mask: the mask array to provide, if any.
        labels_mask: a mask array to combine into `lsds_mask`, if any.
    """

    def __init__(
        self,
        labels: gp.ArrayKey,
        lsds: gp.ArrayKey,
        sigma: float | Sequence[float],
        downsample: int = 1,
        lsds_mask: gp.ArrayKey | None = None,
        labels_mask: gp.ArrayKey | None = None,
    ):
        self.labels = labels
        self.lsds = lsds
        self.sigma = sigma
        self.downsample = downsample
        self.lsds_mask = lsds_mask
        self.labels_mask = labels_mask

    def setup(self) -> None:
        if self.labels not in self.spec:
            raise InputError(f"AddLsds: upstream does not provide the labels {self.labels}")
        if self.labels_mask is not None and self.labels_mask not in self.spec:
            raise InputError(
                f"AddLsds: upstream does not provide the labels mask {self.labels_mask}"
            )
        if not isinstance(self.downsample, int) or self.downsample < 1:
            raise InputError(
                f"AddLsds: downsample must be a positive integer, got {self.downsample!r}"
            )
        labels_spec = self.spec[self.labels]
        voxel_size = labels_spec.voxel_size
        if voxel_size is None:
            raise InputError(f"AddLsds: the labels {self.labels} have no voxel size")
        dims = voxel_size.dims
        lsd_channels(dims)  # raises for anything but 2D and 3D
        sigma = np.asarray(self.sigma, dtype=np.float64).reshape(-1)
        if np.ndim(self.sigma) == 0:
            sigma = np.repeat(sigma, dims)
        if len(sigma) != dims or not all(s > 0 for s in sigma):
            raise InputError(
                f"AddLsds: sigma {self.sigma} must be positive, one value or one per axis "
                f"of the {dims}D labels {self.labels}"
            )
        self._sigma = tuple(float(s) for s in sigma)
        self._grid = voxel_size * self.downsample
        # the truncated Gaussian's reach on the downsampled grid, in world units
        self._context = Coordinate(
            gaussian_radius(s / g) * g for s, g in zip(self._sigma, self._grid, strict=True)
        )

        spec = labels_spec.copy()
        spec.dtype = np.float32
        spec.interpolatable = False
        self.provides(self.lsds, spec)
        if self.lsds_mask is not None:
            self.provides(self.lsds_mask, spec.copy())
        self.enable_autoskip()

    def prepare(self, request: gp.BatchRequest) -> gp.BatchRequest:
        deps = gp.BatchRequest()
        needed: list[Roi] = []
        if self.lsds in request:
            needed.append(request[self.lsds].roi.grow(self._context, self._context))
        if self.lsds_mask is not None and self.lsds_mask in request:
            mask_roi = request[self.lsds_mask].roi
            needed.append(mask_roi)
            if self.labels_mask is not None:
                if self.labels_mask in request:
                    mask_roi = mask_roi.union(request[self.labels_mask].roi)
                deps[self.labels_mask] = gp.ArraySpec(roi=mask_roi)
        if not needed:
            return deps
        if self.labels in request:
            needed.append(request[self.labels].roi)
        labels_roi = needed[0]
        for roi in needed[1:]:
            labels_roi = labels_roi.union(roi)
        if self.lsds in request:
            # the labels must start on the downsampled grid of the whole volume
            anchor = self._anchor()
            labels_roi = (labels_roi - anchor).snap_to_grid(self._grid, mode="grow") + anchor
        upstream_roi = self.spec[self.labels].roi
        if upstream_roi is not None:
            labels_roi = labels_roi.intersect(upstream_roi)
        deps[self.labels] = gp.ArraySpec(roi=labels_roi)
        return deps

    def process(self, batch: gp.Batch, request: gp.BatchRequest) -> gp.Batch:
        outputs = gp.Batch()
        labels = batch[self.labels]
        if self.lsds in request:
            roi = request[self.lsds].roi
            spec = self.spec[self.lsds].copy()
            spec.roi = roi
            outputs[self.lsds] = gp.Array(self._compute(labels, roi), spec)

        if self.lsds_mask is not None and self.lsds_mask in request:
            roi = request[self.lsds_mask].roi
            mask = labels.crop(roi).data != 0
            if self.labels_mask is not None:
                mask &= batch[self.labels_mask].crop(roi).data != 0
            channels = lsd_channels(mask.ndim)
            spec = self.spec[self.lsds_mask].copy()
            spec.roi = roi
            outputs[self.lsds_mask] = gp.Array(
                np.repeat(mask[None].astype(np.float32), channels, axis=0), spec
            )
        return outputs

    def _anchor(self) -> Coordinate:
        """Where the downsampled grid starts: the upstream labels' begin, else 0."""
        upstream_roi = self.spec[self.labels].roi
        dims = self._grid.dims
        if upstream_roi is None or None in upstream_roi.begin:
            return Coordinate((0,) * dims)
        return upstream_roi.begin

    def _compute(self, labels: gp.Array, roi: Roi) -> np.ndarray:
        """The LSDs over `roi`, from the labels around it."""
        data = labels.data
        if data.ndim != self._grid.dims:
            raise InputError(
                f"AddLsds: labels {self.labels} have shape {data.shape}, expected "
                f"{self._grid.dims} spatial axes and no channels"
            )
        # Upstream may end mid-block of the downsampled grid (its ROI is not a multiple
        # of it); background beyond the end is what the reach of the Gaussian sees anyway.
        df = self.downsample
        pad = [(0, -s % df) for s in data.shape]
        if any(p for _, p in pad):
            data = np.pad(data, pad)
        window = ((roi - labels.spec.roi.begin) / labels.spec.voxel_size).to_slices()
        return compute_lsds(data, self._sigma, tuple(labels.spec.voxel_size), df, window=window)
