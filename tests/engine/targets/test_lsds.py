"""compute_lsds against the reference lsd_lite, on small volumes so the reference is quick.

lsd_lite computes in float32 with absolute coordinates, so its second moments carry
rounding of about 1e-7 of (volume extent)²; where a label is (nearly) flat along an axis
within the Gaussian's reach, that rounding is as large as the variance itself and its
Pearson channels are noise. The volumes here avoid such labels (Voronoi cells from few
seeds); `test_flat_label_has_neutral_pearson` checks that case on its own.
"""

from __future__ import annotations

import lsd_lite
import numpy as np
import pytest

from engine.errors import InputError
from engine.targets import compute_lsds
from engine.targets import lsds as lsds_module

MAX_DIFF = 1e-3
MEAN_DIFF = 1e-4

ANISOTROPIC = (40, 4, 4)
ISOTROPIC = (8, 8, 8)
SIGMA = 80.0


def voronoi(shape: tuple[int, ...], seeds: int, seed: int) -> np.ndarray:
    """Labels 1..seeds: each voxel takes the id of its nearest random seed (voxel units)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (seeds, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1)
    distances = ((grid[..., None, :] - points) ** 2).sum(axis=-1)
    return (distances.argmin(axis=-1) + 1).astype(np.uint64)


def assert_matches_reference(
    labels: np.ndarray, sigma: float, voxel_size: tuple[int, ...], downsample: int
) -> np.ndarray:
    """compute_lsds equals lsd_lite within the tolerance; returns ours.

    One exception: a Pearson coefficient of an axis along which the label is exactly flat
    within reach (its variance at the floor). Its true value is 0 / floor, neutral 0.5,
    which we return; lsd_lite returns its float32 rounding noise divided by the floor.
    With downsampling, cells cut by background or the border become such slivers.
    """
    ours = compute_lsds(labels, sigma, voxel_size, downsample=downsample)
    reference = lsd_lite.get_lsds(labels, sigma, voxel_size, downsample=downsample)
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape
    diff = np.abs(ours - reference)
    assert diff.mean() <= MEAN_DIFF, f"mean diff {diff.mean():.2e}"

    dims = labels.ndim
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (dims,))
    at_floor = np.stack(
        [ours[dims + d] <= np.float32(1.0001e-3 / sigmas[d] ** 2) for d in range(dims)]
    )
    pairs = [(0, 1), (0, 2), (1, 2)] if dims == 3 else [(0, 1)]
    for channel, (i, j) in enumerate(pairs, start=2 * dims):
        flat = (at_floor[i] | at_floor[j]) & (labels != 0)
        np.testing.assert_allclose(ours[channel][flat], 0.5, atol=1e-6)
        diff[channel][flat] = 0.0
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= MAX_DIFF, f"max diff {diff.max():.2e} at {worst}"
    return ours


downsamples = pytest.mark.parametrize("downsample", [1, 2])


@downsamples
def test_anisotropic_3d(downsample: int) -> None:
    labels = voronoi((12, 40, 40), 10, seed=1)
    lsds = assert_matches_reference(labels, SIGMA, ANISOTROPIC, downsample)
    assert lsds.shape == (10, 12, 40, 40)


@downsamples
def test_isotropic_3d(downsample: int) -> None:
    labels = voronoi((16, 24, 24), 6, seed=2)
    assert_matches_reference(labels, SIGMA, ISOTROPIC, downsample)


@downsamples
def test_2d(downsample: int) -> None:
    labels = voronoi((64, 64), 10, seed=3)
    lsds = assert_matches_reference(labels, 40.0, (4, 4), downsample)
    assert lsds.shape == (6, 64, 64)


@downsamples
def test_2d_per_axis_sigma_and_voxel_size(downsample: int) -> None:
    labels = voronoi((48, 64), 8, seed=4)
    ours = compute_lsds(labels, (40.0, 24.0), (8, 4), downsample=downsample)
    reference = lsd_lite.get_lsds(labels, (40.0, 24.0), (8, 4), downsample=downsample)
    assert np.abs(ours - reference).max() <= MAX_DIFF


@downsamples
def test_single_label_fills_volume(downsample: int) -> None:
    labels = np.full((8, 32, 32), 7, dtype=np.uint64)
    lsds = assert_matches_reference(labels, SIGMA, ANISOTROPIC, downsample)
    # the (downsampled) grid is symmetric about its centre, so are the y offsets
    corners = np.arange(0, 32, downsample)
    mirrored = corners[::-1]
    np.testing.assert_allclose(lsds[1, 4, corners] + lsds[1, 4, mirrored], 1.0, atol=1e-6)


@downsamples
def test_labels_touching_the_border(downsample: int) -> None:
    labels = np.zeros((8, 32, 32), dtype=np.uint64)
    labels[:, :, :6] = 1  # a slab along the x = 0 face
    labels[:4, 20:, 10:] = 2  # a block in the z = 0, y = end corner
    labels[4:, :10, 24:] = 3
    labels[labels == 0] = 4
    assert_matches_reference(labels, SIGMA, ANISOTROPIC, downsample)


@downsamples
def test_background_is_zero(downsample: int) -> None:
    labels = voronoi((12, 40, 40), 8, seed=5)
    labels[:, :, 30:] = 0
    labels[5:7] = 0
    lsds = assert_matches_reference(labels, SIGMA, ANISOTROPIC, downsample)
    assert not lsds[:, labels == 0].any()
    assert (lsds[:, labels != 0].sum(axis=0) > 0).all()


@downsamples
def test_one_id_in_two_pieces(downsample: int) -> None:
    labels = voronoi((12, 40, 40), 8, seed=6)
    # two cells far apart share an id; each piece sees the other within the Gaussian
    labels[labels == 8] = 1
    assert (labels == 1).any()
    assert_matches_reference(labels, SIGMA, ANISOTROPIC, downsample)


@downsamples
def test_ids_above_32_bits(downsample: int) -> None:
    small = voronoi((12, 40, 40), 8, seed=7)
    small[:2] = 0
    # ids that collide modulo 2**32 and one above 2**53, where float64 would merge ids
    ids = np.array([0, 2**33 + 1, 2**34 + 1, 2**40, 2**53 + 1, 2**53 + 2, 2**60, 5, 2**63 + 3])
    big = ids.astype(np.uint64)[small]
    lsds = assert_matches_reference(big, SIGMA, ANISOTROPIC, downsample)
    # only the partition matters, not the ids
    assert np.array_equal(lsds, compute_lsds(small, SIGMA, ANISOTROPIC, downsample))


def test_label_missed_by_the_downsampled_grid() -> None:
    """A sheet on odd z slices has no voxel on the grid of downsample 2: its voxels get the
    reference's no-mass values (offsets of a centre of mass at the array's origin)."""
    labels = voronoi((8, 32, 32), 4, seed=10)
    labels[1] = 9
    lsds = assert_matches_reference(labels, SIGMA, ANISOTROPIC, downsample=2)
    sheet = lsds[:, 1]
    assert not sheet[-1].any()  # no mass
    assert sheet[1, 0, 0] == 0.5 and sheet[1, 4, 4] > 0  # offsets fall off from the origin


def test_labels_to_compute() -> None:
    labels = voronoi((8, 32, 32), 6, seed=8)
    ours = compute_lsds(labels, SIGMA, ANISOTROPIC, labels_to_compute=[2, 5])
    reference = lsd_lite.get_lsds(labels, SIGMA, ANISOTROPIC, labels=[2, 5])
    assert np.abs(ours - reference).max() <= MAX_DIFF
    others = ~np.isin(labels, [2, 5])
    assert not ours[:, others].any()
    assert ours[:, ~others].any()


def test_flat_label_has_neutral_pearson() -> None:
    """A one-voxel-thick sheet has no spread along z: its z variance is the floor and its
    z Pearson coefficients are exactly neutral (lsd_lite returns rounding noise here)."""
    labels = np.zeros((8, 32, 32), dtype=np.uint64)
    labels[3, 4:28, 4:28] = 1
    lsds = compute_lsds(labels, SIGMA, ANISOTROPIC)
    sheet = lsds[:, 3, 4:28, 4:28]
    assert np.all(sheet[3] == np.float32(1e-3 / SIGMA**2))
    assert np.all(sheet[6:8] == 0.5)  # Pearson zy, zx
    assert np.all(sheet[0] == 0.5)  # no offset along z


def test_tiles_and_batches_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large boxes are filtered in tiles and LSDs made in batches of voxels; forcing both
    on a small volume changes nothing."""
    labels = voronoi((12, 40, 40), 4, seed=9)
    whole = compute_lsds(labels, SIGMA, ANISOTROPIC, downsample=2)
    monkeypatch.setattr(lsds_module, "_TILE", 5)
    monkeypatch.setattr(lsds_module, "_FLUSH_VOXELS", 100)
    tiled = compute_lsds(labels, SIGMA, ANISOTROPIC, downsample=2)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_empty_and_all_background() -> None:
    assert compute_lsds(np.zeros((4, 8, 8), np.uint64), SIGMA, ANISOTROPIC).shape == (
        10,
        4,
        8,
        8,
    )
    assert not compute_lsds(np.zeros((8, 8), np.int32), 20.0, (4, 4)).any()


@pytest.mark.parametrize(
    ("labels", "sigma", "voxel_size", "downsample", "message"),
    [
        (np.ones((4, 8, 8), np.uint64), SIGMA, (4, 4), 1, "voxel_size"),
        (np.ones((4, 8, 8), np.uint64), (80.0, 80.0), ANISOTROPIC, 1, "sigma"),
        (np.ones((4, 8, 8), np.uint64), -1.0, ANISOTROPIC, 1, "sigma"),
        (np.ones((4, 8, 8), np.uint64), SIGMA, (40, 0, 4), 1, "voxel_size"),
        (np.ones((5, 8, 8), np.uint64), SIGMA, ANISOTROPIC, 2, "divisible"),
        (np.ones((4, 8, 8), np.uint64), SIGMA, ANISOTROPIC, 0, "downsample"),
        (np.ones(8, np.uint64), SIGMA, (4,), 1, "2D and 3D"),
        (np.ones((4, 8, 8), np.float32), SIGMA, ANISOTROPIC, 1, "integer"),
    ],
)
def test_bad_arguments(
    labels: np.ndarray,
    sigma: float | tuple[float, ...],
    voxel_size: tuple[int, ...],
    downsample: int,
    message: str,
) -> None:
    with pytest.raises(InputError, match=message):
        compute_lsds(labels, sigma, voxel_size, downsample=downsample)


@downsamples
@pytest.mark.parametrize(
    "window",
    [
        (slice(3, 9), slice(5, 27), slice(0, 32)),  # off the downsampled grid
        (slice(2, 4), slice(8, 16), slice(30, 32)),  # on it, at the border
        (slice(0, 12), slice(0, 40), slice(0, 32)),  # everything
    ],
)
def test_window_equals_the_crop_of_the_whole(downsample: int, window: tuple[slice, ...]) -> None:
    """A window gets exactly the whole volume's LSDs there (the node computes only its
    request's window), also with a label the downsampled grid misses inside it."""
    labels = voronoi((12, 40, 32), 7, seed=11)
    labels[:, :3] = 0
    labels[5, 10:20, 5:30] = 99  # one section: on no corner at downsample 2
    whole = compute_lsds(labels, SIGMA, ANISOTROPIC, downsample=downsample)
    part = compute_lsds(labels, SIGMA, ANISOTROPIC, downsample=downsample, window=window)
    assert part.shape == (10, *(w.stop - w.start for w in window))
    np.testing.assert_array_equal(part, whole[(slice(None), *window)])
    assert part[:, labels[window] != 0].any()

    chosen = compute_lsds(
        labels, SIGMA, ANISOTROPIC, downsample, labels_to_compute=[3, 99], window=window
    )
    expected = np.where(np.isin(labels, [3, 99]), whole, 0)[(slice(None), *window)]
    np.testing.assert_array_equal(chosen, expected)


def test_bad_window() -> None:
    labels = np.ones((4, 8, 8), np.uint64)
    with pytest.raises(InputError, match="one slice per axis"):
        compute_lsds(labels, SIGMA, ANISOTROPIC, window=(slice(0, 2), slice(0, 2)))
    with pytest.raises(InputError, match="contiguous"):
        compute_lsds(labels, SIGMA, ANISOTROPIC, window=(slice(0, 4, 2), slice(0, 8), slice(0, 8)))


def test_large_and_small_ids_give_the_same_lsds() -> None:
    """Small ids take a lookup table instead of np.unique's sort: same result."""
    small = voronoi((8, 32, 32), 9, seed=12)
    small[:, :4] = 0
    large = np.where(small == 0, 0, small + np.uint64(2**40))
    for downsample in (1, 2):
        np.testing.assert_array_equal(
            compute_lsds(small, SIGMA, ANISOTROPIC, downsample),
            compute_lsds(large, SIGMA, ANISOTROPIC, downsample),
        )
