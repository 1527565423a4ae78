"""The region adjacency graph (RAG) of fragments: statistics of one block, kept in SQLite.

Nodes are fragments (id, center in world units, size in voxels); edges join fragments that
touch through a nearest-neighbour affinity, with the waterz merge score, the mean affinity
and the contact (number of voxel faces) between them. Workers compute both for their block
with :func:`node_stats` and :func:`edge_stats` and write them to one :class:`RagStore`;
agglomeration then reads it back, in chunks of edges (``iter_scored_pairs``) so that
its memory is set by the chunk and the node count, not by the edges.

Fragment ids are uint64 and may be >= 2**63 (see ``engine.segment.fragments.relabel_block``), while
SQLite integers are signed 64-bit. The store keeps the bits: an id ``i`` is stored as the
int64 with the same two's-complement bits (``i`` below 2**63, ``i - 2**64`` above), and is
read back the same way. Equality, and so the primary keys, are preserved; SQL ordering is
not, so ordering is done in numpy after reading.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import numpy as np

from engine.errors import EngineError, InputError

logger = logging.getLogger(__name__)


class Nodes(NamedTuple):
    """Fragments, sorted by id."""

    ids: np.ndarray
    """uint64, unique, no 0."""
    centers: np.ndarray
    """float64 (n, 3): z, y, x of the center of mass in world units (nm)."""
    sizes: np.ndarray
    """int64: voxels."""


class EdgeStats(NamedTuple):
    """Adjacent fragment pairs of one block, sorted by (u, v), u < v."""

    u: np.ndarray
    """uint64."""
    v: np.ndarray
    """uint64."""
    mean_affinity: np.ndarray
    """float64: mean of the affinities between u and v."""
    contact: np.ndarray
    """int64: number of nearest-neighbour voxel pairs (one per affinity) between u and v."""


class ScoredPairs(NamedTuple):
    """Edges with their merge score only, as :meth:`RagStore.iter_scored_pairs` reads them:
    in no particular order."""

    u: np.ndarray
    """uint64."""
    v: np.ndarray
    """uint64."""
    merge_score: np.ndarray
    """float64, never NaN (edges without a score are not read)."""


READ_CHUNK = 1 << 16
"""Rows fetched from SQLite at once by the streaming readers: SQLite hands rows over as
Python tuples (~150 bytes an edge), so this, not the graph, bounds what a read holds."""


class Edges(NamedTuple):
    """RAG edges, sorted by (u, v), u < v (uint64 order)."""

    u: np.ndarray
    """uint64."""
    v: np.ndarray
    """uint64."""
    merge_score: np.ndarray
    """float64: score at which waterz first merges u and v (1.0: never); NaN if unknown."""
    mean_affinity: np.ndarray
    """float64."""
    contact: np.ndarray
    """int64."""


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nodes (
        id INTEGER PRIMARY KEY,
        center_z REAL NOT NULL,
        center_y REAL NOT NULL,
        center_x REAL NOT NULL,
        size INTEGER NOT NULL
    )""",
    # u < v holds in uint64 order, which the stored int64 bits do not keep: Python checks
    # it, SQL only that u and v differ.
    """CREATE TABLE IF NOT EXISTS edges (
        u INTEGER NOT NULL,
        v INTEGER NOT NULL,
        merge_score REAL,
        mean_affinity REAL,
        contact INTEGER NOT NULL,
        PRIMARY KEY (u, v),
        CHECK (u <> v)
    ) WITHOUT ROWID""",
)


class RagStore:
    """A RAG in one SQLite file, written by several worker processes at once.

    Open one store per process (a connection must not cross a fork): each daisy worker
    opens its own. WAL lets readers run while one writer writes; writers queue behind
    each other for up to ``timeout`` seconds (SQLite's busy timeout) instead of failing.

    Every ``write_*`` call is one transaction, or joins the one of an enclosing
    :meth:`transaction` block: write a block's nodes and edges in one ``with
    store.transaction():`` and a worker killed half-way leaves none of them. Writes are
    ``INSERT OR REPLACE``: writing a block again (a retry, a resumed run) replaces its rows,
    and an edge written by two overlapping blocks keeps the last one's values.
    """

    def __init__(self, path: str | Path, *, timeout: float = 600.0) -> None:
        self.path = Path(path)
        # isolation_level=None: no implicit transactions; BEGIN IMMEDIATE is issued here,
        # so a writer takes the write lock up front and waits (busy timeout) for it,
        # instead of failing with "database is locked" when upgrading a read lock.
        # timeout is SQLite's busy timeout.
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._depth = 0
        self._enable_wal(timeout)
        with self.transaction():
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def close(self) -> None:
        self._conn.close()

    def _enable_wal(self, timeout: float) -> None:
        """Switch the file to WAL (a persistent setting), waiting for other openers.

        Changing the journal mode fails at once with "database is locked" while another
        process holds the file, without SQLite's busy handler: workers that open a new
        file together would fail, so this retries until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if str(mode).lower() != "wal":
                raise EngineError(f"SQLite cannot use WAL for {self.path} (mode {mode})")
            return

    def __enter__(self) -> RagStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around the block: all of it is committed, or none."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    def write_nodes(self, ids: np.ndarray, centers: np.ndarray, sizes: np.ndarray) -> None:
        """Insert or replace nodes: ids (n,) uint64 nonzero, centers (n, 3), sizes (n,)."""
        ids = _as_ids(ids, "node ids")
        centers = np.asarray(centers, dtype=np.float64)
        sizes = np.asarray(sizes, dtype=np.int64)
        if centers.shape != (ids.size, 3) or sizes.shape != ids.shape:
            raise InputError(
                f"{ids.size} node ids need centers of shape ({ids.size}, 3) and as many "
                f"sizes, not {centers.shape} and {sizes.shape}"
            )
        if np.any(ids == 0):
            raise InputError("node id 0 is background, not a fragment")
        rows = zip(
            _to_db(ids).tolist(),
            centers[:, 0].tolist(),
            centers[:, 1].tolist(),
            centers[:, 2].tolist(),
            sizes.tolist(),
        )
        with self.transaction():
            self._conn.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)", rows)

    def write_edges(
        self,
        u: np.ndarray,
        v: np.ndarray,
        merge_score: np.ndarray,
        mean_affinity: np.ndarray,
        contact: np.ndarray,
    ) -> None:
        """Insert or replace edges; (u, v) may come in either order, u != v.

        NaN scores or affinities are stored as NULL and read back as NaN.
        """
        u = _as_ids(u, "edge u")
        v = _as_ids(v, "edge v")
        columns = [np.asarray(c) for c in (merge_score, mean_affinity, contact)]
        if v.shape != u.shape or any(c.shape != u.shape for c in columns):
            raise InputError(
                f"edge arrays differ in shape: {[u.shape, v.shape, *(c.shape for c in columns)]}"
            )
        if np.any(u == v):
            raise InputError("an edge joins a fragment to itself")
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        rows = zip(
            _to_db(lo).tolist(),
            _to_db(hi).tolist(),
            _nullable(columns[0]),
            _nullable(columns[1]),
            columns[2].astype(np.int64).tolist(),
        )
        with self.transaction():
            self._conn.executemany("INSERT OR REPLACE INTO edges VALUES (?, ?, ?, ?, ?)", rows)

    def read_nodes(self) -> Nodes:
        """Every node, sorted by id."""
        rows = self._conn.execute(
            "SELECT id, center_z, center_y, center_x, size FROM nodes"
        ).fetchall()
        ids, z, y, x, sizes = _columns(rows, 5)
        node_ids = _from_db(ids)
        order = np.argsort(node_ids, kind="stable")
        return Nodes(
            ids=node_ids[order],
            centers=np.array([z, y, x], dtype=np.float64).T.reshape(-1, 3)[order],
            sizes=np.array(sizes, dtype=np.int64)[order],
        )

    def read_edges(self) -> Edges:
        """Every edge, sorted by (u, v) in uint64 order; NULL scores read as NaN."""
        rows = self._conn.execute(
            "SELECT u, v, merge_score, mean_affinity, contact FROM edges"
        ).fetchall()
        u_db, v_db, merge_score, mean_affinity, contact = _columns(rows, 5)
        u = _from_db(u_db)
        v = _from_db(v_db)
        order = np.lexsort((v, u))
        return Edges(
            u=u[order],
            v=v[order],
            merge_score=_float_column(merge_score)[order],
            mean_affinity=_float_column(mean_affinity)[order],
            contact=np.array(contact, dtype=np.int64)[order],
        )

    def iter_node_ids(self, *, chunk: int = READ_CHUNK) -> Iterator[np.ndarray]:
        """Every node id (uint64), at most ``chunk`` at a time, in no particular order."""
        yield from (
            _from_db(column)
            for (column,) in _chunks(self._conn.execute("SELECT id FROM nodes"), chunk, 1)
        )

    def iter_scored_pairs(
        self, *, below: float, at_least: float | None = None, chunk: int = READ_CHUNK
    ) -> Iterator[ScoredPairs]:
        """The edges with ``at_least <= merge_score < below`` (no lower bound when None), at
        most ``chunk`` at a time, in no particular order; edges without a score never.

        SQLite filters the whole table in C, so only the edges asked for become Python
        objects, ``chunk`` of them at a time: the memory of a read is set by ``chunk``.
        """
        if chunk < 1:
            raise InputError(f"chunk must be >= 1, not {chunk}")
        query = "SELECT u, v, merge_score FROM edges WHERE merge_score < ?"
        arguments: list[float] = [float(below)]
        if at_least is not None:
            query += " AND merge_score >= ?"
            arguments.append(float(at_least))
        for u, v, score in _chunks(self._conn.execute(query, arguments), chunk, 3):
            yield ScoredPairs(
                u=_from_db(u), v=_from_db(v), merge_score=np.array(score, dtype=np.float64)
            )

    def unknown_ends(self) -> np.ndarray:
        """Edge ends that are not nodes (uint64, sorted): none when every block's fragments
        were stored. Found by SQLite through the nodes' primary key, holding no graph."""
        rows = self._conn.execute(
            "SELECT u FROM edges WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE id = edges.u) "
            "UNION SELECT v FROM edges WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE id = edges.v)"
        ).fetchall()
        return np.sort(_from_db([r[0] for r in rows]))


def node_stats(
    fragments: np.ndarray, voxel_size: Sequence[float], offset: Sequence[float]
) -> Nodes:
    """Id, center of mass and size of every nonzero fragment in ``fragments`` (z, y, x).

    The center is ``offset + voxel_size * c`` with ``c`` the mean voxel index (LSD's
    convention), in world units: pass the block's offset (nm) and the voxel size (nm).
    """
    fragments = np.asarray(fragments)
    if fragments.ndim != 3 or len(voxel_size) != 3 or len(offset) != 3:
        raise InputError(
            f"fragments must be 3D and voxel_size and offset 3-vectors, not {fragments.shape}, "
            f"{voxel_size} and {offset}"
        )
    flat = fragments.ravel()
    foreground = np.flatnonzero(flat)
    ids, inverse, sizes = np.unique(flat[foreground], return_inverse=True, return_counts=True)
    coordinates = np.unravel_index(foreground, fragments.shape)
    centers = (
        np.stack(
            [np.bincount(inverse, weights=c, minlength=ids.size) for c in coordinates], axis=1
        ).reshape(-1, 3)
        / np.maximum(sizes, 1)[:, None]
    )
    centers = np.asarray(offset, dtype=np.float64) + centers * np.asarray(
        voxel_size, dtype=np.float64
    )
    return Nodes(ids=ids.astype(np.uint64), centers=centers, sizes=sizes.astype(np.int64))


def edge_stats(fragments: np.ndarray, affs: np.ndarray) -> EdgeStats:
    """Every pair of distinct nonzero fragments that touch along z, y or x, with the mean of
    the affinities between them and their contact.

    ``affs[d][p]`` (d = 0, 1, 2) is the affinity between voxel ``p`` and ``p - e_d``, the
    convention of gunpowder and waterz; this is exactly the pair set of waterz's region
    graph for these fragments. Further channels are ignored. Pairs come sorted by (u, v).
    """
    fragments = np.asarray(fragments)
    if fragments.ndim != 3 or np.ndim(affs) != 4 or np.shape(affs)[1:] != fragments.shape:
        raise InputError(
            f"fragments (z, y, x) and affinities (channels, z, y, x) do not fit: "
            f"{fragments.shape} and {np.shape(affs)}"
        )
    if np.shape(affs)[0] < 3:
        raise InputError(f"need the 3 nearest-neighbour affinity channels, got {np.shape(affs)}")
    # Dense indices first: a pair then packs into one int64 key for a single sort.
    ids, inverse = np.unique(fragments, return_inverse=True)
    index = inverse.reshape(fragments.shape).astype(np.int64)
    zero = 0 if ids.size and ids[0] == 0 else -1
    n = ids.size
    keys = []
    values = []
    for d in range(3):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[d] = slice(1, None)
        lower[d] = slice(None, -1)
        a = index[tuple(upper)]
        b = index[tuple(lower)]
        touching = (a != b) & (a != zero) & (b != zero)
        a = a[touching]
        b = b[touching]
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
        values.append(np.asarray(affs[d])[tuple(upper)][touching].astype(np.float64))
    key = np.concatenate(keys)
    pairs, pair_index, contact = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.bincount(pair_index, weights=np.concatenate(values), minlength=pairs.size)
    return EdgeStats(
        u=ids[pairs // n].astype(np.uint64),
        v=ids[pairs % n].astype(np.uint64),
        mean_affinity=sums / contact,
        contact=contact.astype(np.int64),
    )


def _as_ids(ids: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise InputError(f"{what} must be a 1D array, not of shape {array.shape}")
    if array.dtype.kind not in "ui" and array.size:
        raise InputError(f"{what} must be integers, not {array.dtype}")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise InputError(f"{what} must not be negative")
    return array.astype(np.uint64)


def _to_db(ids: np.ndarray) -> np.ndarray:
    """uint64 ids as the int64 with the same bits (SQLite integers are signed)."""
    return np.ascontiguousarray(ids, dtype=np.uint64).view(np.int64)


def _from_db(values: Sequence[object]) -> np.ndarray:
    """The inverse of :func:`_to_db`, from SQLite's Python ints."""
    return np.array(values, dtype=np.int64).reshape(-1).view(np.uint64)


def _columns(rows: list[tuple[object, ...]], count: int) -> list[Sequence[object]]:
    """Rows as columns, also for no rows."""
    if not rows:
        return [() for _ in range(count)]
    return list(zip(*rows))


def _chunks(cursor: sqlite3.Cursor, chunk: int, count: int) -> Iterator[list[Sequence[object]]]:
    """A query's rows as columns, at most ``chunk`` rows at a time."""
    while rows := cursor.fetchmany(chunk):
        yield _columns(rows, count)


def _nullable(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(x) else x for x in values.astype(np.float64).tolist()]


def _float_column(values: Sequence[object]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in values], dtype=np.float64)
