"""The streamed agglomeration: union-find against scipy, the threshold sweep against
segment_lut, and the reader's chunks bounding what is held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sparse
from scipy.sparse.csgraph import connected_components

from engine.segment.agglomerate import segment_lut
from engine.segment.rag import RagStore
from engine.segment.threshold_sweep import sweep
from engine.segment.union_find import UnionFind

BIG = 2**63


def _scipy_roots(size: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each node's smallest component member, by scipy."""
    graph = sparse.coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    _, first = np.unique(component, return_index=True)
    return first[component]


@pytest.mark.parametrize("chunk", [1, 3, 17, 1000])
@pytest.mark.parametrize("seed", range(4))
def test_union_find_equals_scipy_components(seed: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 300))
    edges = int(rng.integers(0, 2 * size))
    a = rng.integers(0, size, edges)
    b = rng.integers(0, size, edges)
    forest = UnionFind(size)
    for start in range(0, edges, chunk):
        forest.union(a[start : start + chunk], b[start : start + chunk])
    expected = _scipy_roots(size, a, b)
    assert forest.roots().tolist() == expected.tolist()
    assert forest.count() == np.unique(expected).size


def test_union_find_long_chain_in_any_order() -> None:
    # A path hooked one edge at a time from its far end: deep trees before compression.
    size = 500
    forest = UnionFind(size)
    for k in range(size - 2, -1, -1):
        forest.union(np.array([k + 1]), np.array([k]))
    assert forest.count() == 1
    assert not forest.roots().any()
    assert UnionFind(0).count() == 0


def _random_store(path: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A store with ids across 2**63, some NaN scores, scores on float32 boundaries and
    an edge end that is no node; returns (nodes, u, v, scores) as written."""
    rng = np.random.default_rng(seed)
    ids = np.unique(
        np.concatenate(
            [
                rng.integers(1, 10**6, 80).astype(np.uint64),
                BIG + rng.integers(0, 10**6, 40).astype(np.uint64),
            ]
        )
    )
    pairs = {tuple(sorted(p)) for p in rng.choice(ids, (300, 2)).tolist() if p[0] != p[1]}
    u = np.array([p[0] for p in pairs], dtype=np.uint64)
    v = np.array([p[1] for p in pairs], dtype=np.uint64)
    scores = rng.uniform(0, 1, u.size)
    scores[::17] = np.nan
    # Exactly at a threshold in float32, and a float64 a hair on either side of it.
    scores[1::19] = float(np.float32(0.5))
    scores[2::19] = np.nextafter(float(np.float32(0.5)), 0)
    scores[3::19] = np.nextafter(float(np.float32(0.5)), 1)
    u[5] = np.uint64(BIG - 1)  # not a node
    nodes = ids[:-3]  # ... and some edge ends past here are not nodes either
    with RagStore(path) as store:
        store.write_nodes(nodes, np.zeros((nodes.size, 3)), np.ones(nodes.size, np.int64))
        store.write_edges(u, v, scores, np.zeros(u.size), np.ones(u.size, np.int64))
    return nodes, u, v, scores


@pytest.mark.parametrize(("chunk", "batch"), [(1, 1), (7, 5), (64, 1 << 20)])
def test_sweep_equals_segment_lut_at_every_threshold(
    tmp_path: Path, chunk: int, batch: int
) -> None:
    nodes, u, v, scores = _random_store(tmp_path / "rag.sqlite", seed=chunk)
    thresholds = [0.7, 0.1, 0.5, 0.5, 1.0, 0.3]
    seen = []
    with RagStore(tmp_path / "rag.sqlite") as store:
        for threshold, ids, forest in sweep(store, thresholds, chunk=chunk, batch=batch):
            seen.append(threshold)
            fragments, segments = segment_lut(u, v, scores, nodes, threshold)
            assert ids.tolist() == fragments.tolist()
            assert ids[forest.roots()].tolist() == segments.tolist()
            assert forest.count() == np.unique(segments).size
    assert seen == sorted(set(thresholds))


def test_sweep_reads_edges_in_chunks_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _random_store(tmp_path / "rag.sqlite", seed=0)
    read: list[int] = []
    joined: list[int] = []
    original_read = RagStore.iter_scored_pairs
    original_union = UnionFind.union

    def spy_read(self: RagStore, **kw: Any) -> Any:
        for pairs in original_read(self, **kw):
            read.append(pairs.u.size)
            yield pairs

    def spy_union(self: UnionFind, a: np.ndarray, b: np.ndarray) -> None:
        joined.append(np.size(a))
        original_union(self, a, b)

    def whole(self: RagStore) -> Any:
        raise AssertionError("the whole edge list was read")

    monkeypatch.setattr(RagStore, "iter_scored_pairs", spy_read)
    monkeypatch.setattr(RagStore, "read_edges", whole)
    monkeypatch.setattr(UnionFind, "union", spy_union)
    with RagStore(tmp_path / "rag.sqlite") as store:
        for _ in sweep(store, [0.3, 0.9], chunk=8, batch=20):
            pass
    assert read and max(read) <= 8
    assert sum(read) > 8  # several chunks, so the bound was exercised
    assert joined and max(joined) < 20 + 8  # one batch plus at most one chunk at a time


def test_reader_chunks_and_bounds(tmp_path: Path) -> None:
    _, _, _, scores = _random_store(tmp_path / "rag.sqlite", seed=1)
    with RagStore(tmp_path / "rag.sqlite") as store:
        chunks = list(store.iter_scored_pairs(below=0.6, at_least=0.2, chunk=10))
        ids = np.concatenate(list(store.iter_node_ids(chunk=7)))
        unknown = store.unknown_ends()
        whole_nodes = store.read_nodes().ids
    assert all(c.u.size <= 10 for c in chunks)
    got = np.sort(np.concatenate([c.merge_score for c in chunks]))
    finite = scores[~np.isnan(scores)]
    assert got.tolist() == np.sort(finite[(finite >= 0.2) & (finite < 0.6)]).tolist()
    assert np.sort(ids).tolist() == whole_nodes.tolist()
    assert BIG - 1 in unknown.tolist()
    assert not np.isin(unknown, whole_nodes).any()
