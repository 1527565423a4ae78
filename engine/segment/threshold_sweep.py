"""Segments of a RAG store at every threshold, streamed: the agglomeration's global step.

At a threshold ``t`` the segments are the connected components of the edges with
``float32(score) < float32(t)`` (``engine.segment.agglomerate.segment_lut``). A lower threshold's
edges are a subset of a higher one's, so one union-find (engine.segment.union_find) sweeps the
thresholds in ascending order, taking in per threshold only the edges that newly merge
there; SQLite selects them by score, and they arrive ``chunk`` at a time. What is held is
the node ids and the forest (16 bytes a fragment) and one batch of edge ends, never the
edge list: the same segments as ``segment_lut`` on the whole graph, at any size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from engine.errors import InputError
from engine.segment.rag import READ_CHUNK, RagStore
from engine.segment.union_find import UnionFind

UNION_BATCH = 1 << 20
"""Edges gathered before a union: each union ends with an O(nodes) path compression, so
batches much smaller than the node count would cost more than the edges themselves."""


def sweep(
    store: RagStore,
    thresholds: Sequence[float],
    *,
    chunk: int = READ_CHUNK,
    batch: int = UNION_BATCH,
) -> Iterator[tuple[float, np.ndarray, UnionFind]]:
    """Per threshold, ascending (duplicates once): ``(threshold, nodes, forest)``.

    ``nodes`` are every node id and every edge end of the store (uint64, sorted, unique:
    the fragment column of the lookup table); ``forest`` holds their segments at that
    threshold, ``nodes[forest.roots()]`` being each one's segment id (its smallest
    fragment id). The forest grows in place: use it before taking the next threshold.
    Edges are read ``chunk`` at a time and joined ``batch`` at a time.
    """
    wanted = sorted({float(t) for t in thresholds})
    if wanted and not all(np.isfinite(wanted)):
        raise InputError(f"thresholds must be finite numbers, not {list(thresholds)}")
    nodes = _nodes(store, chunk)
    if nodes.size and nodes[0] == 0:
        raise InputError("fragment id 0 is background: it cannot be a RAG node")
    forest = UnionFind(nodes.size)
    previous: np.float32 | None = None
    for threshold in wanted:
        limit = np.float32(threshold)
        # SQLite compares the stored float64 scores; float32(s) < limit implies s < limit,
        # and float32(s) >= previous implies s >= the float32 just below previous, so these
        # bounds read every edge that merges first at this threshold (and, harmlessly
        # since joining twice changes nothing, a few that merged at the previous one).
        at_least = None if previous is None else float(np.nextafter(previous, np.float32(-1)))
        ends: list[tuple[np.ndarray, np.ndarray]] = []
        pending = 0
        for pairs in store.iter_scored_pairs(below=float(limit), at_least=at_least, chunk=chunk):
            keep = pairs.merge_score.astype(np.float32) < limit
            ends.append(
                (np.searchsorted(nodes, pairs.u[keep]), np.searchsorted(nodes, pairs.v[keep]))
            )
            pending += ends[-1][0].size
            if pending >= batch:
                _join(forest, ends)
                ends, pending = [], 0
        _join(forest, ends)
        previous = limit
        yield threshold, nodes, forest


def _nodes(store: RagStore, chunk: int) -> np.ndarray:
    """Node ids and the ends of edges without a node, sorted and unique."""
    parts = [*store.iter_node_ids(chunk=chunk), store.unknown_ends()]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def _join(forest: UnionFind, ends: list[tuple[np.ndarray, np.ndarray]]) -> None:
    if ends:
        forest.union(np.concatenate([a for a, _ in ends]), np.concatenate([b for _, b in ends]))
