"""Fragments: seeded watershed, mutex watershed and block-unique ids, on toy volumes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.errors import InputError
from engine.segment.fragments import fragments_mutex, fragments_watershed, relabel_block

NEIGHBOURS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]


def toy_labels(shape: tuple[int, int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi cells (ids 1..cells) separated by a background (0) boundary one voxel thick:
    a voxel is boundary where its -z, -y or -x neighbour is in another cell."""
    points = rng.uniform(0, 1, (cells, 3)) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    _, nearest = cKDTree(points).query(grid.reshape(-1, 3))
    labels = (nearest + 1).reshape(shape).astype(np.uint64)
    boundary = np.zeros(shape, dtype=bool)
    for d in range(3):
        upper, lower = _shifted(d)
        boundary[upper] |= labels[upper] != labels[lower]
    labels[boundary] = 0
    result: np.ndarray = labels
    return result


def toy_dense_labels(
    shape: tuple[int, int, int], cells: int, rng: np.random.Generator
) -> np.ndarray:
    """Voronoi cells without boundary: a dense over-segmentation to agglomerate."""
    points = rng.uniform(0, 1, (cells, 3)) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    _, nearest = cKDTree(points).query(grid.reshape(-1, 3))
    labels: np.ndarray = (nearest + 1).reshape(shape).astype(np.uint64)
    return labels


def toy_affinities(
    labels: np.ndarray, rng: np.random.Generator, noise: float = 0.3, sigma: float = 0.7
) -> np.ndarray:
    """Nearest-neighbour affinities (gunpowder convention) of ``labels``, with Gaussian
    noise, blurred and clipped to [0, 1]: float32 (3, z, y, x)."""
    affs = np.zeros((3, *labels.shape), dtype=np.float32)
    for d in range(3):
        upper, lower = _shifted(d)
        affs[d][upper] = (labels[upper] == labels[lower]) & (labels[upper] != 0)
    affs += np.asarray(rng.normal(0, noise, affs.shape), dtype=np.float32)
    blurred: np.ndarray = ndimage.gaussian_filter(affs, (0, sigma, sigma, sigma))
    clipped: np.ndarray = np.clip(blurred, 0, 1).astype(np.float32)
    return clipped


def _ids_are_1_to_n(fragments: np.ndarray, n: int) -> bool:
    return np.array_equal(np.unique(fragments[fragments != 0]), np.arange(1, n + 1))


def _shifted(d: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of voxels p and p - e_d."""
    upper = [slice(None)] * 3
    lower = [slice(None)] * 3
    upper[d] = slice(1, None)
    lower[d] = slice(None, -1)
    return tuple(upper), tuple(lower)


@pytest.fixture
def toy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    labels = toy_labels((12, 32, 32), 10, rng)
    return labels, toy_affinities(labels, rng, noise=0.2)


def test_watershed_ids_are_1_to_n_and_boundary_is_background(
    toy: tuple[np.ndarray, np.ndarray],
) -> None:
    labels, affs = toy
    fragments, n = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=5)
    assert fragments.dtype == np.uint64
    assert fragments.shape == labels.shape
    assert n > 10
    assert _ids_are_1_to_n(fragments, n)
    boundary = affs.mean(axis=0) <= 0.5
    assert boundary.any()
    assert not fragments[boundary].any()
    assert fragments[~boundary].all()


def test_watershed_fragments_stay_inside_cells(toy: tuple[np.ndarray, np.ndarray]) -> None:
    labels, affs = toy
    fragments, n = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=5)
    inside = (fragments != 0) & (labels != 0)
    # An over-segmentation: nearly all of a fragment lies in one cell.
    pairs, counts = np.unique(
        np.stack([fragments[inside], labels[inside]]), axis=1, return_counts=True
    )
    best = np.zeros(n + 1)
    np.maximum.at(best, pairs[0].astype(np.int64), counts)
    assert best.sum() >= 0.97 * inside.sum()


def test_fill_boundary_gives_every_voxel_a_fragment(toy: tuple[np.ndarray, np.ndarray]) -> None:
    _, affs = toy
    plain, n = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=5)
    filled, m = fragments_watershed(
        affs, fragments_in_xy=False, min_seed_distance=5, fill_boundary=True
    )
    assert (plain == 0).any() and not (filled == 0).any()
    assert m == n
    # Fragments only grow: every foreground voxel keeps its fragment.
    assert np.array_equal(filled[plain != 0], plain[plain != 0])


def test_larger_seed_distance_gives_fewer_fragments(toy: tuple[np.ndarray, np.ndarray]) -> None:
    _, affs = toy
    _, fine = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=2)
    _, coarse = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=8)
    assert coarse < fine


def test_mask_makes_background(toy: tuple[np.ndarray, np.ndarray]) -> None:
    _, affs = toy
    mask = np.zeros(affs.shape[1:], dtype=np.uint8)
    mask[:, :, :16] = 1
    fragments, n = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=5, mask=mask)
    assert not fragments[:, :, 16:].any()
    assert _ids_are_1_to_n(fragments, n)
    # The mask removes voxels only: where it is set, the foreground is the same.
    assert np.array_equal(fragments[..., :16] != 0, affs[:, ..., :16].mean(axis=0) > 0.5)


def test_xy_fragments_are_per_section(toy: tuple[np.ndarray, np.ndarray]) -> None:
    _, affs = toy
    fragments, n = fragments_watershed(affs, fragments_in_xy=True, min_seed_distance=5)
    assert _ids_are_1_to_n(fragments, n)
    sections = [set(np.unique(section)) - {0} for section in fragments]
    assert sum(len(s) for s in sections) == n  # no id in two sections
    # Ids go section after section.
    assert all(max(a) < min(b) for a, b in itertools.pairwise(sections) if a and b)
    # Only the y and x affinities decide a section's fragments.
    other = affs.copy()
    other[0] = np.random.default_rng(5).uniform(0, 1, other[0].shape)
    again, _ = fragments_watershed(other, fragments_in_xy=True, min_seed_distance=5)
    assert np.array_equal(again, fragments)
    boundary = affs[1:3].mean(axis=0) <= 0.5
    assert not fragments[boundary].any()


@pytest.mark.parametrize("in_xy", [False, True])
def test_epsilon_agglomeration_merges_fragments(
    toy: tuple[np.ndarray, np.ndarray], in_xy: bool
) -> None:
    _, affs = toy
    plain, n_plain = fragments_watershed(affs, fragments_in_xy=in_xy, min_seed_distance=2)
    merged, n_merged = fragments_watershed(
        affs, fragments_in_xy=in_xy, min_seed_distance=2, epsilon_agglomerate=0.3
    )
    assert n_merged < n_plain
    assert _ids_are_1_to_n(merged, n_merged)
    assert np.array_equal(merged != 0, plain != 0)
    # Each merged fragment is a union of plain ones.
    pairs = np.unique(np.stack([plain[plain != 0], merged[plain != 0]]), axis=1)
    assert np.unique(pairs[0]).size == pairs.shape[1]
    if in_xy:
        sections = [set(np.unique(section)) - {0} for section in merged]
        assert sum(len(s) for s in sections) == n_merged


def test_watershed_rejects_bad_input(toy: tuple[np.ndarray, np.ndarray]) -> None:
    _, affs = toy
    with pytest.raises(InputError, match="channels"):
        fragments_watershed(affs[:2], fragments_in_xy=False, min_seed_distance=5)
    with pytest.raises(InputError, match="min_seed_distance"):
        fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=0)
    with pytest.raises(InputError, match="mask"):
        fragments_watershed(
            affs, fragments_in_xy=False, min_seed_distance=5, mask=np.ones((2, 2, 2))
        )


def test_all_boundary_gives_no_fragments() -> None:
    affs = np.zeros((3, 4, 8, 8), dtype=np.float32)
    fragments, n = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=3)
    assert n == 0
    assert not fragments.any()


def test_mutex_covers_the_foreground_and_finds_clean_cells() -> None:
    rng = np.random.default_rng(2)
    labels = toy_labels((10, 24, 24), 8, rng)
    affs = toy_affinities(labels, rng, noise=0.0, sigma=0.0)
    mask = np.ones(labels.shape, dtype=bool)
    mask[:2] = False
    fragments, n = fragments_mutex(affs, NEIGHBOURS, bias=-0.5, mask=mask)
    assert fragments.dtype == np.uint64
    assert _ids_are_1_to_n(fragments, n)
    assert fragments[mask].all()
    assert not fragments[~mask].any()
    # Clean affinities: the cells come back exactly (boundary voxels are singletons).
    cells = mask & (labels != 0)
    pairs = np.unique(np.stack([labels[cells], fragments[cells]]), axis=1)
    assert np.unique(pairs[0]).size == np.unique(pairs[1]).size == pairs.shape[1]


def test_mutex_with_long_range_offsets_and_per_channel_bias() -> None:
    rng = np.random.default_rng(3)
    labels = toy_labels((8, 20, 20), 6, rng)
    short = toy_affinities(labels, rng, noise=0.1)
    long_range = np.zeros_like(short)
    for d in range(3):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[d] = slice(3, None)
        lower[d] = slice(None, -3)
        long_range[d][tuple(upper)] = labels[tuple(upper)] == labels[tuple(lower)]
    affs = np.concatenate([short, long_range])
    offsets = NEIGHBOURS + [[3 * v for v in o] for o in NEIGHBOURS]
    fragments, n = fragments_mutex(affs, offsets, bias=[-0.5] * 3 + [-0.8] * 3)
    assert fragments.all()
    assert _ids_are_1_to_n(fragments, n)
    with pytest.raises(InputError, match="offset"):
        fragments_mutex(affs, NEIGHBOURS)


def test_relabel_block_is_deterministic_and_unique_across_blocks() -> None:
    rng = np.random.default_rng(4)
    block_voxels = 4 * 5 * 6
    a = rng.integers(0, block_voxels + 1, (4, 5, 6)).astype(np.uint64)
    b = rng.integers(0, block_voxels + 1, (4, 5, 6)).astype(np.uint64)
    a[0, 0, 0] = b[0, 0, 0] = 0
    a[0, 0, 1] = b[0, 0, 1] = block_voxels  # the largest local id allowed
    first = relabel_block(a, 7, block_voxels)
    assert np.array_equal(first, relabel_block(a, 7, block_voxels))  # a retry
    second = relabel_block(b, 8, block_voxels)
    assert np.array_equal(first == 0, a == 0)
    assert np.array_equal(first[a != 0], a[a != 0] + np.uint64(7 * block_voxels))
    assert not set(np.unique(first[first != 0])) & set(np.unique(second[second != 0]))
    # A fragment's block comes back from its id.
    assert set(((first[first != 0] - np.uint64(1)) // np.uint64(block_voxels)).tolist()) == {7}
    assert a.max() == block_voxels  # input left alone


def test_relabel_block_reaches_ids_above_2_63_and_checks_ranges() -> None:
    block_voxels = 2**20
    block = 2**63 // block_voxels + 5
    out = relabel_block(np.array([[[0, 1, 2]]], dtype=np.uint64), block, block_voxels)
    assert out.dtype == np.uint64
    assert out[0, 0, 1] == np.uint64(block * block_voxels + 1) >= np.uint64(2**63)
    with pytest.raises(InputError, match="exceeds"):
        relabel_block(np.array([[[block_voxels + 1]]]), 0, block_voxels)
    with pytest.raises(InputError, match="overflow"):
        relabel_block(np.array([[[1]]]), 2**64 // block_voxels, block_voxels)
    with pytest.raises(InputError, match="block_index"):
        relabel_block(np.array([[[1]]]), -1, block_voxels)


def test_a_component_without_seed_is_a_fragment_of_its_own() -> None:
    # A wide region and, behind a wall, a strip two voxels wide: the window of the maximum
    # filter spans both, so the strip holds no maximum of its own.
    affs = np.ones((3, 6, 20, 20), dtype=np.float32)
    affs[:, :, :, 12] = 0.0
    affs[:, :, :, 15:] = 0.0
    fragments, n = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=15)
    foreground = affs.mean(axis=0) > 0.5
    assert fragments[foreground].all()
    assert not fragments[~foreground].any()
    assert _ids_are_1_to_n(fragments, n)
    assert len(np.unique(fragments[..., 13:15])) == 1
    assert fragments[0, 0, 13] != fragments[0, 0, 0]
    for i in range(1, n + 1):
        assert ndimage.label(fragments == i)[1] == 1
