"""engine.evaluate.metrics.score against skimage.metrics, plus the cases whose answer is known.

skimage masks only by the true image (``ignore_labels`` drops voxels where image_true is
in it), which is the CREMI convention ``score`` follows, so the reference is called with
``ignore_labels=(0,)`` on the raw arrays. skimage builds a table as large as the biggest
id, so ids above 2**32 are densely relabelled before they are handed to it; the scores
do not depend on the id values.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, variation_of_information

from engine.errors import InputError
from engine.evaluate.metrics import Scores, score

RTOL = 1e-9


def _reference(seg: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """(voi_split, voi_merge, arand) from skimage, on ids it can index."""
    seg = np.unique(seg, return_inverse=True)[1].reshape(seg.shape)
    _, gt_dense = np.unique(gt, return_inverse=True)
    # Keep 0 as the ignored id: dense index of 0 is 0 only when 0 occurs, so shift by one.
    gt = np.where(gt == 0, 0, gt_dense.reshape(gt.shape) + 1)
    split, merge = variation_of_information(gt, seg, ignore_labels=(0,))
    are, _, _ = adapted_rand_error(gt, seg, ignore_labels=(0,))
    return float(split), float(merge), float(are)


def _random_pair(
    rng: np.random.Generator, shape: tuple[int, ...], n_ids: int, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """A gt with some 0 voxels, and a seg that is a noisy relabelling of it."""
    gt = rng.integers(0, n_ids, size=shape).astype(np.uint64)
    gt = np.where(gt == 0, np.uint64(0), gt + np.uint64(offset))
    # Seg: merge gt ids in pairs, then split off random voxels into new ids.
    seg = gt // np.uint64(2) + np.uint64(offset)
    noise = rng.random(shape) < 0.2
    seg[noise] = rng.integers(0, 3 * n_ids, size=int(noise.sum())).astype(np.uint64) + np.uint64(
        offset
    )
    return seg, gt


@pytest.mark.parametrize(
    ("shape", "n_ids", "offset"),
    [
        ((64, 64), 50, 0),
        ((16, 32, 32), 400, 0),
        ((16, 32, 32), 400, 2**40),
        ((8, 16, 16), 2000, 2**63),
    ],
)
def test_matches_skimage(shape: tuple[int, ...], n_ids: int, offset: int) -> None:
    rng = np.random.default_rng(n_ids)
    seg, gt = _random_pair(rng, shape, n_ids, offset)
    assert int(gt.max()) >= offset and int(seg.max()) >= offset

    got = score(seg, gt)
    split, merge, are = _reference(seg, gt)

    assert got.voi_split > 0 and got.voi_merge > 0 and 0 < got.arand < 1
    np.testing.assert_allclose(got.voi_split, split, rtol=RTOL)
    np.testing.assert_allclose(got.voi_merge, merge, rtol=RTOL)
    np.testing.assert_allclose(got.arand, are, rtol=RTOL)
    np.testing.assert_allclose(got.voi, split + merge, rtol=RTOL)


def test_matches_skimage_on_premasked_voxels() -> None:
    """Ignoring gt 0 is the same as scoring only the voxels where gt != 0, with no ignore."""
    rng = np.random.default_rng(7)
    seg, gt = _random_pair(rng, (32, 32, 32), 300, 0)
    keep = gt != 0

    got = score(seg, gt)
    split, merge = variation_of_information(gt[keep], seg[keep])
    are, _, _ = adapted_rand_error(gt[keep], seg[keep], ignore_labels=())

    np.testing.assert_allclose(
        [got.voi_split, got.voi_merge, got.arand], [split, merge, are], rtol=RTOL
    )
    assert score(seg[keep], gt[keep], ignore_gt=()) == got


def test_perfect_segmentation_scores_zero() -> None:
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 100, size=(8, 32, 32)).astype(np.uint64)
    seg = gt * np.uint64(3) + np.uint64(2**33)  # same partition, other ids

    assert score(seg, gt) == Scores(voi_split=0.0, voi_merge=0.0, arand=0.0)


def test_one_segment_is_pure_merge() -> None:
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 20, size=(32, 32))
    got = score(np.ones_like(gt), gt)

    assert got.voi_split == 0.0
    assert got.voi_merge > 0.0
    assert got.arand > 0.0


def test_every_voxel_its_own_segment_is_pure_split() -> None:
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 20, size=(32, 32))
    got = score(np.arange(gt.size).reshape(gt.shape), gt)

    assert got.voi_merge == 0.0
    assert got.voi_split > 0.0
    assert got.arand == 1.0  # no pair of voxels shares a segment: recall 0


def test_gt_background_is_ignored() -> None:
    rng = np.random.default_rng(4)
    seg, gt = _random_pair(rng, (16, 32, 32), 200, 0)
    background = gt == 0
    assert background.any()

    changed = seg.copy()
    changed[background] = rng.integers(0, 10**6, size=int(background.sum())).astype(np.uint64)

    assert score(changed, gt) == score(seg, gt)
    # Not ignoring 0 does see the change.
    assert score(changed, gt, ignore_gt=()) != score(seg, gt, ignore_gt=())


def test_custom_ignore_ids() -> None:
    rng = np.random.default_rng(5)
    seg, gt = _random_pair(rng, (32, 32), 30, 0)
    ignored = np.isin(gt, [0, 5])

    assert score(seg, gt, ignore_gt=(0, 5)) == score(seg[~ignored], gt[~ignored], ignore_gt=())


def test_shape_mismatch_raises() -> None:
    with pytest.raises(InputError, match="shape"):
        score(np.zeros((4, 4), dtype=np.uint64), np.zeros((4, 5), dtype=np.uint64))


def test_all_ignored_raises() -> None:
    with pytest.raises(InputError, match="every voxel is ignored"):
        score(np.arange(16).reshape(4, 4), np.zeros((4, 4), dtype=np.uint64))
