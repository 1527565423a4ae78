"""Gunpowder node: labels renumbered 1..n when an id does not fit in int32."""

from __future__ import annotations

import gunpowder as gp
import numpy as np


class CompactLabelIds(gp.BatchFilter):
    """Renumber the labels 1..n when an id does not fit in int32; 0 stays 0.

    Reads and updates `labels`. gp.AddAffinities compares labels as int32, so ids that
    agree modulo 2**32 (common in agglomerated uint64 volumes) would count as one
    object. Batches whose ids all fit pass untouched, at the cost of one max.
    """

    def __init__(self, labels: gp.ArrayKey):
        self.labels = labels

    def setup(self) -> None:
        self.enable_autoskip()
        self.updates(self.labels, self.spec[self.labels].copy())

    def process(self, batch: gp.Batch, request: gp.BatchRequest) -> None:
        labels = batch[self.labels]
        data = labels.data
        if data.size == 0 or int(data.max()) <= np.iinfo(np.int32).max:
            return
        ids, inverse = np.unique(data, return_inverse=True)
        if ids[0] != 0:
            inverse += 1
        labels.data = inverse.reshape(data.shape).astype(data.dtype)
