"""engine.train.prefetch: items from worker processes arrive whole, through shared memory or
the pipe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from engine.train.prefetch import Prefetcher


def _produce() -> Callable[[], Any]:
    counter = iter(range(1_000_000))

    def make() -> Any:
        i = next(counter)
        return {
            "raw": np.full((2, 3, 4), i, np.float32),
            "labels": np.arange(24, dtype=np.uint64).reshape(2, 3, 4) + np.uint64(2**40),
            "names": np.array(["a", "b"]),  # no torch dtype: pickled as it is
            "step": i,
        }

    return make


@pytest.mark.parametrize("shared", [True, False])
def test_items_arrive_whole_through_either_transport(shared: bool) -> None:
    with Prefetcher(_produce, 2, 2, shared_memory=shared) as prefetch:
        items = [prefetch.get() for _ in range(6)]
    for item in items:
        assert isinstance(item["raw"], np.ndarray) and item["raw"].dtype == np.float32
        assert np.all(item["raw"] == item["step"])
        assert item["names"].tolist() == ["a", "b"]
        assert item["labels"].dtype == np.uint64
        assert int(item["labels"][1, 2, 3]) == 2**40 + 23  # past float and int32 range
        item["raw"][0, 0, 0] = -1  # the trainer may write into what it gets
    assert prefetch.shared_memory is shared


def test_a_failing_producer_is_reported_with_its_traceback() -> None:
    def produce() -> Callable[[], Any]:
        def make() -> Any:
            raise ValueError("no such volume")

        return make

    from engine.errors import EngineError

    with Prefetcher(produce, 1, 1, shared_memory=True) as prefetch:
        with pytest.raises(EngineError, match="no such volume"):
            prefetch.get()
