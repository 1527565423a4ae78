"""Gunpowder node: pad an array beyond its upstream ROI, copying only when it must."""

from __future__ import annotations

import gunpowder as gp


class Pad(gp.Pad):  # type: ignore[misc]
    """gp.Pad: the array `key` reaches `size` (world units, None: without limit)
    beyond upstream's ROI, filled with `value` (or reflected).

    Reads and provides `key`. gp.Pad copies the array through `np.pad` for every
    request, also one wholly inside upstream's ROI (most training samples): a copy of
    raw, labels and mask per batch. Here such a request passes the array on as it is.
    """

    def process(self, batch: gp.Batch, request: gp.BatchRequest) -> None:
        if (
            isinstance(self.key, gp.ArrayKey)
            and self.key in request
            and batch.arrays[self.key].spec.roi == request[self.key].roi
        ):
            return
        super().process(batch, request)
