"""Contingency counts of (ground truth, segmentation) ids: built per block, merged exactly.

A table is three parallel arrays: ground-truth id, segmentation id and how many voxels
carry both (sorted by (gt, seg), each pair once). Tables of disjoint parts of a volume
merge into the table of their union (`merge`), so a blockwise evaluation holds one
block's voxels at a time and ends with exactly the whole-volume table. Every score
(engine.evaluate.metrics) is a function of the table alone.

Exact at any size: counts are int64 (a table of 2**63 voxels is beyond any volume), and
the sums of squared counts that the adapted Rand error needs, which pass 2**63 from
about 3·10⁹ voxels in one object, are summed in two 32-bit halves into Python ints
(`sum_of_squares`), never in wrapping int64.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LOW = np.uint64(0xFFFFFFFF)
# Squares of counts below this fit an unsigned 64-bit integer with room for the split.
_SMALL = np.int64(2**31)


@dataclass(frozen=True)
class Table:
    """Overlap counts: `count[i]` voxels have ground truth `gt[i]` and segment `seg[i]`."""

    gt: np.ndarray
    seg: np.ndarray
    count: np.ndarray

    @property
    def voxels(self) -> int:
        return int(self.count.sum(dtype=np.int64))

    def save(self, path: Path) -> None:
        """Write the table to `path` (.npz), atomically: a half-written block is redone."""
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, gt=self.gt, seg=self.seg, count=self.count)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Table:
        with np.load(path) as data:
            return cls(data["gt"], data["seg"], data["count"])


def empty() -> Table:
    return Table(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))


def count_pairs(gt: np.ndarray, seg: np.ndarray) -> Table:
    """The table of two id arrays of one shape (every voxel counted: drop ignored voxels
    first)."""
    gt = np.asarray(gt).ravel().astype(np.uint64, copy=False)
    seg = np.asarray(seg).ravel().astype(np.uint64, copy=False)
    if gt.size == 0:
        return empty()
    gt_ids, gt_idx = np.unique(gt, return_inverse=True)
    seg_ids, seg_idx = np.unique(seg, return_inverse=True)
    # One int64 key per voxel: dense indices multiply to at most voxels**2 < 2**63 for any
    # block that fits in memory.
    keys, counts = np.unique(
        gt_idx.ravel().astype(np.int64) * seg_ids.size + seg_idx.ravel(), return_counts=True
    )
    return Table(
        gt_ids[keys // seg_ids.size], seg_ids[keys % seg_ids.size], counts.astype(np.int64)
    )


def merge(tables: Iterable[Table]) -> Table:
    """One table of all `tables` (counts of a pair in several added up)."""
    parts = [t for t in tables if t.count.size]
    if not parts:
        return empty()
    gt = np.concatenate([t.gt for t in parts])
    seg = np.concatenate([t.seg for t in parts])
    count = np.concatenate([t.count for t in parts])
    order = np.lexsort((seg, gt))
    gt, seg, count = gt[order], seg[order], count[order]
    starts = np.flatnonzero(np.r_[True, (gt[1:] != gt[:-1]) | (seg[1:] != seg[:-1])])
    return Table(gt[starts], seg[starts], np.add.reduceat(count, starts))


class Accumulator:
    """Merges tables as they come, keeping one merged table (bounded by distinct pairs,
    not by voxels or blocks): pending tables are folded in once they hold as many pairs
    as the merged one."""

    def __init__(self) -> None:
        self._merged = empty()
        self._pending: list[Table] = []
        self._pending_pairs = 0

    def add(self, table: Table) -> None:
        self._pending.append(table)
        self._pending_pairs += table.count.size
        if self._pending_pairs > max(self._merged.count.size, 1 << 16):
            self._fold()

    def _fold(self) -> None:
        self._merged = merge([self._merged, *self._pending])
        self._pending, self._pending_pairs = [], 0

    def result(self) -> Table:
        self._fold()
        return self._merged


def marginals(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Voxels per ground-truth id and per segment id (int64, in id order)."""
    _, gt_idx = np.unique(table.gt, return_inverse=True)
    _, seg_idx = np.unique(table.seg, return_inverse=True)
    # Not bincount with weights: it sums in float64, inexact past 2**53.
    gt_sizes = np.zeros(gt_idx.max() + 1 if gt_idx.size else 0, np.int64)
    np.add.at(gt_sizes, gt_idx.ravel(), table.count)
    seg_sizes = np.zeros(seg_idx.max() + 1 if seg_idx.size else 0, np.int64)
    np.add.at(seg_sizes, seg_idx.ravel(), table.count)
    return gt_sizes, seg_sizes


def sum_of_squares(counts: np.ndarray) -> int:
    """Σ counts² exactly, as a Python int, for non-negative int64 counts of any size.

    Each square below 2**62 is split into its high and low 32 bits; each half sums
    without overflow over up to 2**31 terms. Counts of 2**31 or more (objects of
    billions of voxels, rare) are squared as Python ints.
    """
    counts = np.asarray(counts, dtype=np.int64).ravel()
    large = counts >= _SMALL
    total = sum(int(c) * int(c) for c in counts[large])
    small = counts[~large].astype(np.uint64)
    for part in np.array_split(small, max(1, -(-small.size // 2**31))):
        squares = part * part
        total += (int((squares >> np.uint64(32)).sum(dtype=np.uint64)) << 32) + int(
            (squares & _LOW).sum(dtype=np.uint64)
        )
    return total
