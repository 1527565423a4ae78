"""Segmentation scores against ground truth: variation of information and adapted Rand error.

Conventions follow scikit-image (``skimage.metrics``) and CREMI / the LSD paper:

- voxels whose ground-truth id is in ``ignore_gt`` (default: 0, background/unknown) are
  dropped before anything is counted; the segmentation's ids there do not matter;
- entropies are in bits (base-2 logarithm), because ``skimage.metrics`` computes
  ``x * log2(x)``, and so do CREMI's ``voi_split`` / ``voi_merge``;
- the adapted Rand error is ``1 - F`` with precision and recall weighted equally, counting
  pairs of distinct voxels, as ``skimage.metrics.adapted_rand_error``.

Everything is computed from one contingency table of (ground truth, segmentation) ids
(engine.evaluate.contingency), which blockwise evaluation merges from per-block tables; ids of any
size (uint64 above 2**32 included) cost nothing extra, and the pair counts are summed
exactly at any volume size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError
from engine.evaluate.contingency import Table, count_pairs, marginals, sum_of_squares


@dataclass(frozen=True)
class Scores:
    """Scores of one segmentation against its ground truth (lower is better, 0 is perfect)."""

    voi_split: float
    """H(seg | gt) in bits: over-segmentation (a gt object cut into several segments)."""
    voi_merge: float
    """H(gt | seg) in bits: under-segmentation (several gt objects in one segment)."""
    arand: float
    """Adapted Rand error: 1 - F-score of Rand precision and recall, in [0, 1]."""

    @property
    def voi(self) -> float:
        """Variation of information, split + merge."""
        return self.voi_split + self.voi_merge


def score(
    segmentation: np.ndarray,
    ground_truth: np.ndarray,
    ignore_gt: Sequence[int] = (0,),
) -> Scores:
    """Score ``segmentation`` against ``ground_truth`` (integer id arrays of one shape).

    Voxels where ``ground_truth`` is in ``ignore_gt`` are excluded from every score.
    ``voi_split`` and ``voi_merge`` equal ``skimage.metrics.variation_of_information(gt, seg,
    ignore_labels=ignore_gt)``; ``arand`` equals the first value of
    ``skimage.metrics.adapted_rand_error(gt, seg, ignore_labels=ignore_gt)``, except that it
    is 0.0 (not NaN) when no two scored voxels share an id in either volume (identical
    all-singleton partitions).

    Raises InputError when the shapes differ or every voxel is ignored.
    """
    seg = np.asarray(segmentation)
    gt = np.asarray(ground_truth)
    if seg.shape != gt.shape:
        raise InputError(
            f"segmentation shape {seg.shape} differs from ground truth shape {gt.shape}; "
            "score them on the same ROI"
        )
    gt = gt.ravel()
    seg = seg.ravel()
    ignore = list(ignore_gt)
    if ignore:
        keep = np.isin(gt, ignore, invert=True)
        gt = gt[keep]
        seg = seg[keep]
    n = gt.size
    if n == 0:
        raise InputError(f"every voxel is ignored (ground truth ids {ignore}); nothing to score")

    return scores_of(count_pairs(gt, seg))


def scores_of(table: Table) -> Scores:
    """The scores of a contingency table (engine.evaluate.contingency), e.g. one merged from
    blocks. Raises InputError when it counts no voxel."""
    n = table.voxels
    if n == 0:
        raise InputError("no voxel to score: every voxel is ignored or masked out")
    gt_sizes, seg_sizes = marginals(table)
    _, gt_row = np.unique(table.gt, return_inverse=True)
    _, seg_col = np.unique(table.seg, return_inverse=True)
    n_ij = table.count.astype(np.float64)
    # -sum p_ij log(p_ij / p_i), written per cell so a perfect match is exactly 0
    # instead of a difference of two large sums.
    split = -np.sum(n_ij * np.log2(n_ij / gt_sizes[gt_row.ravel()])) / n
    merge = -np.sum(n_ij * np.log2(n_ij / seg_sizes[seg_col.ravel()])) / n
    # + 0.0 turns -0.0 into 0.0.
    return Scores(
        voi_split=float(split) + 0.0,
        voi_merge=float(merge) + 0.0,
        arand=adapted_rand_error(table.count, gt_sizes, seg_sizes, n),
    )


def adapted_rand_error(
    counts: np.ndarray, gt_sizes: np.ndarray, seg_sizes: np.ndarray, n: int
) -> float:
    """1 - F-score of the Rand index over pairs of distinct voxels, from the contingency
    counts and both marginals. The sums of squares are exact Python ints
    (engine.evaluate.contingency.sum_of_squares): int64 dot products wrap past ~3·10⁹ voxels."""
    return rand_error_of_sums(
        sum_of_squares(counts), sum_of_squares(gt_sizes), sum_of_squares(seg_sizes), n
    )


def rand_error_of_sums(squares: int, gt_squares: int, seg_squares: int, n: int) -> float:
    """The adapted Rand error from exact integer sums: Σ n_ij², Σ a_i², Σ b_j² and the
    voxel count ``n`` (what :func:`adapted_rand_error` computes from arrays; blockwise
    scoring sums them part by part)."""
    both = squares - n
    in_gt = gt_squares - n
    in_seg = seg_squares - n
    denominator = in_gt + in_seg
    if denominator == 0:
        return 0.0
    # Fraction-free but exact up to the final division: both terms are Python ints.
    return 1.0 - 2 * both / denominator
