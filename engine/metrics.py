"""Segmentation scores against ground truth: variation of information and adapted Rand error.

Conventions follow scikit-image (``skimage.metrics``) and CREMI / the LSD paper:

- voxels whose ground-truth id is in ``ignore_gt`` (default: 0, background/unknown) are
  dropped before anything is counted; the segmentation's ids there do not matter;
- entropies are in bits (base-2 logarithm), because ``skimage.metrics`` computes
  ``x * log2(x)``, and so do CREMI's ``voi_split`` / ``voi_merge``;
- the adapted Rand error is ``1 - F`` with precision and recall weighted equally, counting
  pairs of distinct voxels, as ``skimage.metrics.adapted_rand_error``.

Everything is computed from one sparse contingency table of (ground truth, segmentation)
ids, relabelled to dense indices first, so ids of any size (uint64 above 2**32 included)
cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse

from engine.errors import InputError


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

    table, gt_sizes, seg_sizes = _contingency(gt, seg)
    voi_split, voi_merge = _voi(table, gt_sizes, seg_sizes, n)
    arand = _arand(table, gt_sizes, seg_sizes, n)
    return Scores(voi_split=voi_split, voi_merge=voi_merge, arand=arand)


def _contingency(
    gt: np.ndarray, seg: np.ndarray
) -> tuple[sparse.coo_matrix, np.ndarray, np.ndarray]:
    """Return the (gt, seg) overlap counts as a duplicate-free COO table, and both marginals."""
    _, gt_idx = np.unique(gt, return_inverse=True)
    _, seg_idx = np.unique(seg, return_inverse=True)
    gt_idx = gt_idx.ravel()
    seg_idx = seg_idx.ravel()
    # Marginals from the dense indices directly: exact int64 counts.
    gt_sizes = np.bincount(gt_idx)
    seg_sizes = np.bincount(seg_idx)
    # Summing duplicate (gt, seg) pairs through one sort of a combined int64 key is several
    # times faster than coo_matrix.sum_duplicates (a lexsort); the key fits because
    # n_gt * n_seg <= n_voxels**2.
    pairs, counts = np.unique(gt_idx * seg_sizes.size + seg_idx, return_counts=True)
    table = sparse.coo_matrix(
        (counts.astype(np.int64), (pairs // seg_sizes.size, pairs % seg_sizes.size)),
        shape=(gt_sizes.size, seg_sizes.size),
    )
    return table, gt_sizes, seg_sizes


def _voi(
    table: sparse.coo_matrix, gt_sizes: np.ndarray, seg_sizes: np.ndarray, n: int
) -> tuple[float, float]:
    """Return (H(seg|gt), H(gt|seg)) in bits."""
    n_ij = table.data.astype(np.float64)
    # -sum p_ij log(p_ij / p_i), written per cell so a perfect match is exactly 0
    # instead of a difference of two large sums.
    split = -np.sum(n_ij * np.log2(n_ij / gt_sizes[table.row])) / n
    merge = -np.sum(n_ij * np.log2(n_ij / seg_sizes[table.col])) / n
    # + 0.0 turns -0.0 into 0.0.
    return float(split) + 0.0, float(merge) + 0.0


def _arand(table: sparse.coo_matrix, gt_sizes: np.ndarray, seg_sizes: np.ndarray, n: int) -> float:
    """Return 1 - F-score of the Rand index over pairs of distinct voxels."""
    # Python ints: sums of squared counts stay exact however many voxels there are.
    both = int(np.dot(table.data, table.data)) - n
    in_gt = int(np.dot(gt_sizes, gt_sizes)) - n
    in_seg = int(np.dot(seg_sizes, seg_sizes)) - n
    denominator = in_gt + in_seg
    if denominator == 0:
        return 0.0
    return 1.0 - 2 * both / denominator
