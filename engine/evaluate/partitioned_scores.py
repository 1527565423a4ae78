"""Scores of a blockwise count, holding a bounded part of the merged table at a time.

The merged contingency table of a large segmentation (engine.evaluate.contingency) grows with its
distinct (label, segment) pairs, not with the blocks. Every score is a sum over that
table's cells, and each cell needs only its count and one marginal:

- VOI split sums ``n_ij log2(n_ij / a_i)`` over cells, ``a_i`` the label's size;
- VOI merge sums ``n_ij log2(n_ij / b_j)``, ``b_j`` the segment's size;
- the adapted Rand error needs ``Σ n_ij²``, ``Σ a_i²``, ``Σ b_j²`` and ``n``.

A cell's count is complete only once every block holding that pair is added, so the
pairs are split by a hash of the label id into parts: a part holds all the pairs of its
labels, hence complete counts and complete ``a_i``; a second sweep splits them by segment
id for ``b_j``. Each block file is read once: its rows go to a file per part of each
sweep (beside the block files, removed at the end); each part is then merged from its
own file and summed, then dropped.
The integer sums are exact Python ints (engine.evaluate.contingency.sum_of_squares), so the
adapted Rand error equals the whole table's; the VOI sums differ only in the order of
float additions. When everything fits the budget, the whole table is merged at once as
before (:func:`engine.evaluate.block_counts.merged`), and the scores are identical.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.evaluate.block_counts import CountPlan, block_files, merged
from engine.evaluate.contingency import Accumulator, Table, marginals, sum_of_squares
from engine.evaluate.metrics import Scores, rand_error_of_sums, scores_of

logger = logging.getLogger(__name__)

PAIR_BUDGET = 1 << 20
"""Block-table rows merged at once, over all datasets (a merge holds ~80 bytes a row)."""

_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: ids in runs spread evenly
_SWEEPS = ("gt", "seg")
# A row of a part file: the dataset's index in the plan, then a block table's row.
_ROW = np.dtype([("dataset", "<u4"), ("gt", "<u8"), ("seg", "<u8"), ("count", "<i8")])


@dataclass(frozen=True)
class CountScores:
    """What evaluate reports of one blockwise count."""

    voxels: int
    """Voxels scored (the same for every dataset: they share labels and masks)."""
    scores: dict[str, Scores]
    """Per dataset; empty when no voxel is scored."""
    one_segment: Scores | None
    """The baseline of everything in one segment; None when no voxel is scored."""


def count_scores(plan: CountPlan, *, budget: int = PAIR_BUDGET) -> CountScores:
    """The scores of every dataset of ``plan`` from its block files (engine.evaluate.block_counts),
    merging at most about ``budget`` block-table rows at a time."""
    files = block_files(plan)
    rows, voxels = 0, 0
    for path in files:
        with np.load(path) as data:
            rows += sum(int(data[f"{name}/count"].size) for name in plan.datasets)
            if plan.datasets:
                voxels += int(data[f"{plan.datasets[0]}/count"].sum(dtype=np.int64))
    if voxels == 0:
        return CountScores(0, {}, None)
    parts = max(1, math.ceil(rows / max(1, budget)))
    if parts == 1:
        tables = merged(plan)
        first = tables[plan.datasets[0]]
        return CountScores(
            voxels, {name: scores_of(t) for name, t in tables.items()}, _one_segment(first)
        )
    logger.info(
        "%s: %d block-table rows, scored in %d parts by label and %d by segment",
        plan.name,
        rows,
        parts,
        parts,
    )
    return _partitioned(plan, files, parts, voxels)


def _one_segment(table: Table) -> Scores:
    """Everything one segment: each label's voxels all in segment 1."""
    gt_sizes, _ = marginals(table)
    return scores_of(Table(np.unique(table.gt), np.ones(gt_sizes.size, np.uint64), gt_sizes))


@dataclass
class _Sums:
    split: float = 0.0
    merge: float = 0.0
    squares: int = 0
    gt_squares: int = 0
    seg_squares: int = 0
    gt_entropy: float = 0.0
    """Σ a_i log2(a_i / n): the one-segment baseline's merge term."""


def _partitioned(plan: CountPlan, files: Sequence[Path], parts: int, n: int) -> CountScores:
    with tempfile.TemporaryDirectory(prefix=".parts-", dir=plan.folder) as tmp:
        folder = Path(tmp)
        _split(plan, files, parts, folder)
        sums = _summed(plan, folder, parts, n)
    scores = {
        name: Scores(
            voi_split=-s.split / n + 0.0,
            voi_merge=-s.merge / n + 0.0,
            arand=rand_error_of_sums(s.squares, s.gt_squares, s.seg_squares, n),
        )
        for name, s in sums.items()
    }
    first = sums[plan.datasets[0]]
    one_segment = Scores(
        voi_split=0.0,
        voi_merge=-first.gt_entropy / n + 0.0,
        arand=rand_error_of_sums(first.gt_squares, first.gt_squares, n * n, n),
    )
    return CountScores(n, scores, one_segment)


def _summed(plan: CountPlan, folder: Path, parts: int, n: int) -> dict[str, _Sums]:
    sums = {name: _Sums() for name in plan.datasets}
    for name, table in _parts(plan, folder, parts, "gt"):
        gt_sizes, _ = marginals(table)
        _, row = np.unique(table.gt, return_inverse=True)
        n_ij = table.count.astype(np.float64)
        total = sums[name]
        total.split += float(np.sum(n_ij * np.log2(n_ij / gt_sizes[row.ravel()])))
        # Every pair of these labels is here, so each n_ij is complete before squaring.
        total.squares += sum_of_squares(table.count)
        total.gt_squares += sum_of_squares(gt_sizes)
        a = gt_sizes.astype(np.float64)
        total.gt_entropy += float(np.sum(a * np.log2(a / n)))
    for name, table in _parts(plan, folder, parts, "seg"):
        _, seg_sizes = marginals(table)
        _, column = np.unique(table.seg, return_inverse=True)
        n_ij = table.count.astype(np.float64)
        sums[name].merge += float(np.sum(n_ij * np.log2(n_ij / seg_sizes[column.ravel()])))
        sums[name].seg_squares += sum_of_squares(seg_sizes)
    return sums


def _split(plan: CountPlan, files: Sequence[Path], parts: int, folder: Path) -> None:
    """Every block file read once: each dataset's rows appended to the file of their
    label's part (sweep "gt") and to that of their segment's part (sweep "seg")."""
    outputs = {
        (by, part): (folder / f"{by}.{part}.bin").open("ab")
        for by in _SWEEPS
        for part in range(parts)
    }
    try:
        for path in files:
            with np.load(path) as data:
                for index, name in enumerate(plan.datasets):
                    # Each access of an npz member reads it again: read each column once.
                    table = Table(*(data[f"{name}/{c}"] for c in ("gt", "seg", "count")))
                    rows = np.empty(table.count.size, _ROW)
                    rows["dataset"] = index
                    rows["gt"], rows["seg"], rows["count"] = table.gt, table.seg, table.count
                    for by in _SWEEPS:
                        part = _part_of(getattr(table, by), parts)
                        order = np.argsort(part, kind="stable")
                        bounds = np.searchsorted(part[order], np.arange(parts + 1))
                        for p in range(parts):
                            if bounds[p + 1] > bounds[p]:
                                rows[order[bounds[p] : bounds[p + 1]]].tofile(outputs[(by, p)])
    finally:
        for output in outputs.values():
            output.close()


def _parts(plan: CountPlan, folder: Path, parts: int, by: str) -> Iterator[tuple[str, Table]]:
    """Per part and dataset, the merged table of the pairs whose ``by`` id (gt or seg)
    hashes to that part: all of them, from the part's file (see `_split`)."""
    for part in range(parts):
        rows = np.fromfile(folder / f"{by}.{part}.bin", _ROW)
        for index, name in enumerate(plan.datasets):
            mine = rows[rows["dataset"] == index]
            if not mine.size:
                continue
            total = Accumulator()
            total.add(Table(mine["gt"].copy(), mine["seg"].copy(), mine["count"].copy()))
            yield name, total.result()
        del rows


def _part_of(ids: np.ndarray, parts: int) -> np.ndarray:
    # uint64 products wrap modulo 2**64, which is what the hash wants.
    with np.errstate(over="ignore"):
        mixed = np.asarray(ids, dtype=np.uint64) * _SPREAD
    return (mixed >> np.uint64(32)) % np.uint64(parts)
