"""Gunpowder node: loss weights that balance the classes of a label array."""

from __future__ import annotations

import gunpowder as gp
import numpy as np

from engine.errors import InputError


class BalanceLabels(gp.BatchFilter):  # type: ignore[misc]
    """gp.BalanceLabels (without slabs): the same weights, without its sorts.

    gunpowder finds the classes present with two `np.unique` calls over the whole
    array, a sort each, a fifth of a CREMI training batch; a class histogram
    (`np.bincount`) gives the same counts in one pass.

    Reads:
        labels: class labels in [0, num_classes) (affinities: 0 or 1), any dtype.
        mask (optional): weights to balance within; a voxel where it is 0 counts for no
            class and gets weight 0.

    Provides:
        scales: float32, the labels' shape and ROI: the mask times the weight of the
            voxel's class, ``1 / num_classes / fraction`` with the class' fraction of
            the masked-in voxels clipped to [clipmin, clipmax].

    Args:
        labels: the class labels to balance.
        scales: the weight array to provide.
        mask: the mask array, if any.
        num_classes: the number of classes.
        clipmin, clipmax: bounds of the class fractions (None: unbounded).
    """

    def __init__(
        self,
        labels: gp.ArrayKey,
        scales: gp.ArrayKey,
        mask: gp.ArrayKey | None = None,
        num_classes: int = 2,
        clipmin: float | None = 0.05,
        clipmax: float | None = 0.95,
    ):
        self.labels = labels
        self.scales = scales
        self.mask = mask
        self.num_classes = num_classes
        self.clipmin = clipmin
        self.clipmax = clipmax

    def setup(self) -> None:
        for key in (self.labels, self.mask):
            if key is not None and key not in self.spec:
                raise InputError(f"BalanceLabels: upstream does not provide {key}")
        spec = self.spec[self.labels].copy()
        spec.dtype = np.float32
        self.provides(self.scales, spec)
        self.enable_autoskip()

    def prepare(self, request: gp.BatchRequest) -> gp.BatchRequest:
        deps = gp.BatchRequest()
        deps[self.labels] = request[self.scales].copy()
        if self.mask is not None:
            deps[self.mask] = request[self.scales].copy()
        return deps

    def process(self, batch: gp.Batch, request: gp.BatchRequest) -> gp.Batch:
        labels = batch[self.labels]
        mask = None if self.mask is None else batch[self.mask].data
        if mask is not None and mask.shape != labels.data.shape:
            raise InputError(
                f"BalanceLabels: mask {self.mask} has shape {mask.shape}, labels "
                f"{self.labels} {labels.data.shape}"
            )
        scales = balance_weights(
            labels.data, mask, self.num_classes, self.clipmin, self.clipmax, str(self.labels)
        )
        spec = self.spec[self.scales].copy()
        spec.roi = labels.spec.roi
        outputs = gp.Batch()
        outputs[self.scales] = gp.Array(scales, spec)
        return outputs


def balance_weights(
    labels: np.ndarray,
    mask: np.ndarray | None,
    num_classes: int = 2,
    clipmin: float | None = 0.05,
    clipmax: float | None = 0.95,
    name: str = "labels",
) -> np.ndarray:
    """The float32 weights of `BalanceLabels` for `labels` within `mask`."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(
            f"BalanceLabels: {name} must lie in [0, {num_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    classes = labels.astype(np.int64)
    # float32 as gunpowder makes it (ones times the mask), summed as it sums it
    scale = np.ones(labels.shape, dtype=np.float32)
    if mask is not None:
        scale *= mask
    masked_in = scale.sum()
    counts = np.bincount(classes[scale != 0], minlength=num_classes)
    present = np.flatnonzero(counts)
    fractions = counts[present].astype(float) / masked_in
    if clipmin is not None or clipmax is not None:
        np.clip(fractions, clipmin, clipmax, fractions)
    weights = np.zeros(num_classes)
    weights[present] = 1.0 / float(num_classes) / fractions
    scale *= np.take(weights, classes)
    return scale
