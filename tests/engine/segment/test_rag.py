"""The RAG: node and edge statistics against brute force, and the SQLite store."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pytest
import waterz

from engine.errors import InputError
from engine.segment.rag import RagStore, edge_stats, node_stats
from tests.engine.segment.test_fragments import toy_affinities, toy_dense_labels

BIG = 2**63  # ids from here on do not fit SQLite's signed integers as they are


def _tiny(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.array([0, 3, BIG + 7, 2**64 - 1, 42], dtype=np.uint64)
    fragments = ids[rng.integers(0, ids.size, (3, 4, 5))]
    affs = rng.uniform(0, 1, (3, 3, 4, 5)).astype(np.float32)
    return fragments, affs


def test_node_stats_match_brute_force() -> None:
    fragments, _ = _tiny(0)
    voxel_size = (40.0, 4.0, 2.0)
    offset = (400.0, -8.0, 10.0)
    nodes = node_stats(fragments, voxel_size, offset)
    expected: dict[int, list[tuple[int, int, int]]] = {}
    for z, y, x in np.ndindex(fragments.shape):
        if fragments[z, y, x]:
            expected.setdefault(int(fragments[z, y, x]), []).append((z, y, x))
    assert nodes.ids.dtype == np.uint64
    assert nodes.ids.tolist() == sorted(expected)
    for i, node in enumerate(nodes.ids.tolist()):
        voxels = np.array(expected[node], dtype=np.float64)
        assert nodes.sizes[i] == len(voxels)
        center = np.array(offset) + voxels.mean(axis=0) * np.array(voxel_size)
        assert np.allclose(nodes.centers[i], center)


def test_edge_stats_match_brute_force() -> None:
    fragments, affs = _tiny(1)
    pairs: dict[tuple[int, int], list[float]] = {}
    for z, y, x in np.ndindex(fragments.shape):
        for d, (dz, dy, dx) in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1)]):
            if z < dz or y < dy or x < dx:
                continue
            a = int(fragments[z, y, x])
            b = int(fragments[z - dz, y - dy, x - dx])
            if a and b and a != b:
                pairs.setdefault((min(a, b), max(a, b)), []).append(float(affs[d, z, y, x]))
    stats = edge_stats(fragments, affs)
    assert stats.u.dtype == stats.v.dtype == np.uint64
    assert list(zip(stats.u.tolist(), stats.v.tolist())) == sorted(pairs)
    for i, key in enumerate(sorted(pairs)):
        assert stats.contact[i] == len(pairs[key])
        assert stats.mean_affinity[i] == pytest.approx(np.mean(pairs[key]))


def test_edge_pairs_are_waterz_region_graph() -> None:
    rng = np.random.default_rng(2)
    fragments = toy_dense_labels((8, 16, 16), 60, rng)
    fragments[:, :3] = 0  # some background, which waterz leaves out too
    affs = toy_affinities(toy_dense_labels((8, 16, 16), 6, rng), rng)
    stats = edge_stats(fragments, affs)
    # At threshold 0 nothing is merged yet: waterz's region graph is the initial one.
    _, graph = next(
        waterz.agglomerate(affs, [0.0], fragments=fragments.copy(), return_region_graph=True)
    )
    assert sorted((e["u"], e["v"]) for e in graph) == list(zip(stats.u.tolist(), stats.v.tolist()))


def test_ids_at_and_above_2_63_round_trip(tmp_path: Path) -> None:
    ids = np.array([2**64 - 1, 1, BIG, BIG - 1], dtype=np.uint64)
    centers = np.arange(12, dtype=np.float64).reshape(4, 3)
    with RagStore(tmp_path / "rag.db") as store:
        store.write_nodes(ids, centers, np.array([5, 6, 7, 8]))
        store.write_edges(
            np.array([BIG, 2**64 - 1], dtype=np.uint64),
            np.array([1, BIG], dtype=np.uint64),
            merge_score=np.array([0.25, np.nan]),
            mean_affinity=np.array([0.5, 0.75]),
            contact=np.array([3, 4]),
        )
        nodes = store.read_nodes()
        edges = store.read_edges()
    order = np.argsort(ids)
    assert nodes.ids.dtype == np.uint64
    assert nodes.ids.tolist() == sorted(ids.tolist())
    assert np.array_equal(nodes.centers, centers[order])
    assert nodes.sizes.tolist() == np.array([5, 6, 7, 8])[order].tolist()
    # Normalised to u < v in uint64 order, sorted by (u, v).
    assert edges.u.tolist() == [1, BIG]
    assert edges.v.tolist() == [BIG, 2**64 - 1]
    assert edges.merge_score[0] == 0.25 and np.isnan(edges.merge_score[1])
    assert edges.mean_affinity.tolist() == [0.5, 0.75]
    assert edges.contact.tolist() == [3, 4]


def test_rewrite_is_idempotent_and_replaces(tmp_path: Path) -> None:
    fragments, affs = _tiny(3)
    nodes = node_stats(fragments, (1, 1, 1), (0, 0, 0))
    stats = edge_stats(fragments, affs)
    scores = np.linspace(0, 1, stats.u.size)
    with RagStore(tmp_path / "rag.db") as store:
        for _ in range(2):  # a retried block
            with store.transaction():
                store.write_nodes(*nodes)
                store.write_edges(stats.u, stats.v, scores, stats.mean_affinity, stats.contact)
        first = store.read_edges()
        assert first.u.size == stats.u.size
        assert store.read_nodes().ids.size == nodes.ids.size
        store.write_edges(stats.v, stats.u, scores / 2, stats.mean_affinity, stats.contact)
        second = store.read_edges()
    assert np.array_equal(second.u, first.u)
    assert np.allclose(second.merge_score, scores / 2)


def test_a_failed_block_leaves_nothing(tmp_path: Path) -> None:
    fragments, affs = _tiny(4)
    nodes = node_stats(fragments, (1, 1, 1), (0, 0, 0))
    stats = edge_stats(fragments, affs)
    with RagStore(tmp_path / "rag.db") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.write_nodes(*nodes)
            store.write_edges(
                stats.u, stats.v, stats.mean_affinity, stats.mean_affinity, stats.contact
            )
            raise RuntimeError("worker died")
        assert store.read_nodes().ids.size == 0
        assert store.read_edges().u.size == 0


def test_bad_rows_are_refused(tmp_path: Path) -> None:
    with RagStore(tmp_path / "rag.db") as store:
        with pytest.raises(InputError, match="itself"):
            one = np.ones(1)
            store.write_edges(np.array([3]), np.array([3]), one, one, one)
        with pytest.raises(InputError, match="background"):
            store.write_nodes(np.array([0]), np.zeros((1, 3)), np.array([1]))
        with pytest.raises(InputError, match="shape"):
            store.write_nodes(np.array([1, 2]), np.zeros((1, 3)), np.array([1, 2]))


def _write_blocks(path: str, worker: int, blocks: int, start: Barrier) -> None:
    start.wait()  # both write at once
    with RagStore(path, timeout=60) as store:
        for block in range(blocks):
            base = np.uint64(BIG) + np.uint64(1000 * (worker * blocks + block))
            ids = base + np.arange(1, 51, dtype=np.uint64)
            with store.transaction():
                store.write_nodes(ids, np.zeros((50, 3)), np.ones(50, dtype=np.int64))
                store.write_edges(
                    ids[:-1], ids[1:], np.full(49, 0.5), np.full(49, 0.5), np.ones(49)
                )


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    path = str(tmp_path / "rag.db")  # created by both at once, too
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    workers = [context.Process(target=_write_blocks, args=(path, w, 20, start)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    with RagStore(path) as store:
        nodes = store.read_nodes()
        edges = store.read_edges()
    assert nodes.ids.size == 2 * 20 * 50
    assert np.unique(nodes.ids).size == nodes.ids.size
    assert edges.u.size == 2 * 20 * 49
    assert nodes.ids.min() > np.uint64(BIG)
    journal = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
