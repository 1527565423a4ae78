"""AddLsds inside a real gunpowder pipeline: a batch equals the whole volume's LSDs."""

from __future__ import annotations

import gunpowder as gp
import numpy as np
import pytest
from funlib.geometry import Coordinate, Roi
from funlib.persistence import Array
from gunpowder.pipeline import PipelineSetupError

from engine.errors import InputError
from engine.nodes import AddLsds
from engine.targets import compute_lsds

VOXEL = Coordinate(40, 4, 4)
OFFSET = Coordinate(440, 84, 124)  # off the origin and off the downsampled grid (80, 8, 8)
SIGMA = 80.0


def voronoi_labels(shape: tuple[int, ...], seeds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (seeds, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1)
    nearest = ((grid[..., None, :] - points) ** 2).sum(axis=-1).argmin(axis=-1)
    labels = (nearest + 1).astype(np.uint64) * np.uint64(2**33)
    labels[:, :, :5] = 0  # some background
    return labels


@pytest.fixture
def labels() -> np.ndarray:
    return voronoi_labels((16, 64, 64), 12, seed=0)


def voxel_roi(begin: tuple[int, ...], shape: tuple[int, ...]) -> Roi:
    """A world ROI from voxel coordinates relative to the volume's start."""
    return Roi(OFFSET + Coordinate(begin) * VOXEL, Coordinate(shape) * VOXEL)


def request_batch(pipeline: gp.Pipeline, request: gp.BatchRequest) -> gp.Batch:
    with gp.build(pipeline):
        return pipeline.request_batch(request)


@pytest.mark.parametrize(
    ("downsample", "sigma", "begin", "shape"),
    [
        (1, SIGMA, (4, 20, 24), (6, 20, 16)),  # inside: the full context is read
        (1, SIGMA, (0, 0, 40), (4, 12, 24)),  # at the volume's corner: context is clipped
        # off the downsampled grid, with a context that stays inside the volume, so the
        # grid's phase comes from the node, not from the clipping
        (2, (80.0, 24.0, 24.0), (9, 25, 23), (5, 20, 18)),
    ],
)
def test_batch_equals_whole_volume(
    labels: np.ndarray,
    downsample: int,
    sigma: float | tuple[float, ...],
    begin: tuple[int, ...],
    shape: tuple[int, ...],
) -> None:
    keys = gp.ArrayKey("LABELS"), gp.ArrayKey("LSDS"), gp.ArrayKey("LSDS_MASK")
    source = gp.ArraySource(keys[0], Array(labels, OFFSET, VOXEL), interpolatable=False)
    pipeline = source + AddLsds(
        keys[0], keys[1], sigma=sigma, downsample=downsample, lsds_mask=keys[2]
    )
    roi = voxel_roi(begin, shape)
    request = gp.BatchRequest()
    request[keys[1]] = gp.ArraySpec(roi=roi)
    request[keys[2]] = gp.ArraySpec(roi=roi)
    request[keys[0]] = gp.ArraySpec(roi=roi)

    batch = request_batch(pipeline, request)

    crop = tuple(slice(b, b + s) for b, s in zip(begin, shape, strict=True))
    whole = compute_lsds(labels, sigma, VOXEL, downsample=downsample)[(slice(None), *crop)]
    lsds = batch[keys[1]]
    assert lsds.spec.roi == roi
    assert lsds.spec.dtype == np.float32 and lsds.data.dtype == np.float32
    assert lsds.data.shape == (10, *shape)
    np.testing.assert_allclose(lsds.data, whole, atol=1e-5)
    assert lsds.data.any()

    mask = batch[keys[2]].data
    expected_mask = np.broadcast_to(labels[crop] != 0, (10, *shape))
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, expected_mask.astype(np.float32))
    # the labels come back as requested, not grown
    assert batch[keys[0]].spec.roi == roi
    np.testing.assert_array_equal(batch[keys[0]].data, labels[crop])


def test_context_matters(labels: np.ndarray) -> None:
    """Without the grown context the border LSDs would differ: the test above can fail."""
    begin, shape = (4, 20, 24), (6, 20, 16)
    crop = tuple(slice(b, b + s) for b, s in zip(begin, shape, strict=True))
    whole = compute_lsds(labels, SIGMA, VOXEL)[(slice(None), *crop)]
    cropped_first = compute_lsds(labels[crop], SIGMA, VOXEL)
    assert np.abs(whole - cropped_first).max() > 0.01


def test_labels_mask_and_zarr_source(labels: np.ndarray, tmp_path) -> None:
    from funlib.persistence import prepare_ds

    keys = [gp.ArrayKey(n) for n in ("LABELS", "MASK", "LSDS", "LSDS_MASK")]
    stored = prepare_ds(
        tmp_path / "labels.zarr",
        shape=labels.shape,
        offset=OFFSET,
        voxel_size=VOXEL,
        dtype=np.uint64,
    )
    stored[stored.roi] = labels
    valid = np.ones(labels.shape, dtype=np.uint8)
    valid[:, 40:] = 0
    sources = (
        gp.ArraySource(keys[0], stored, interpolatable=False),
        gp.ArraySource(keys[1], Array(valid, OFFSET, VOXEL), interpolatable=False),
    )
    pipeline = sources + gp.MergeProvider()
    pipeline += AddLsds(keys[0], keys[2], SIGMA, lsds_mask=keys[3], labels_mask=keys[1])
    roi = voxel_roi((4, 30, 0), (8, 20, 20))
    request = gp.BatchRequest()
    request[keys[2]] = gp.ArraySpec(roi=roi)
    request[keys[3]] = gp.ArraySpec(roi=roi)

    batch = request_batch(pipeline, request)

    crop = (slice(4, 12), slice(30, 50), slice(0, 20))
    expected = (labels[crop] != 0) & (valid[crop] != 0)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(batch[keys[3]].data, np.repeat(expected[None], 10, 0))
    whole = compute_lsds(labels, SIGMA, VOXEL)[(slice(None), *crop)]
    np.testing.assert_allclose(batch[keys[2]].data, whole, atol=1e-5)


def test_only_the_mask_requested(labels: np.ndarray) -> None:
    keys = gp.ArrayKey("LABELS"), gp.ArrayKey("LSDS"), gp.ArrayKey("LSDS_MASK")
    source = gp.ArraySource(keys[0], Array(labels, OFFSET, VOXEL), interpolatable=False)
    pipeline = source + AddLsds(keys[0], keys[1], SIGMA, lsds_mask=keys[2])
    request = gp.BatchRequest()
    request[keys[2]] = gp.ArraySpec(roi=voxel_roi((0, 0, 0), (4, 8, 8)))

    batch = request_batch(pipeline, request)

    assert keys[1] not in batch
    assert batch[keys[2]].data.shape == (10, 4, 8, 8)


def test_sigma_of_the_wrong_arity_names_the_node(labels: np.ndarray) -> None:
    keys = gp.ArrayKey("LABELS"), gp.ArrayKey("LSDS")
    source = gp.ArraySource(keys[0], Array(labels, OFFSET, VOXEL), interpolatable=False)
    pipeline = source + AddLsds(keys[0], keys[1], sigma=(80.0, 80.0))
    with pytest.raises(PipelineSetupError) as raised, gp.build(pipeline):
        pass
    cause = raised.value.__cause__
    assert isinstance(cause, InputError)
    assert "AddLsds" in str(cause) and "sigma" in str(cause)
