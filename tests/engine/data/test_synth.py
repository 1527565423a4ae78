from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from engine.data.synth import synthesize
from engine.errors import InputError

ANISOTROPIC = ((32, 128, 128), (40.0, 4.0, 4.0))
ISOTROPIC = ((48, 48, 48), (8.0, 8.0, 8.0))
PLANE = ((128, 128), (4.0, 4.0))


@pytest.fixture(scope="module")
def anisotropic() -> tuple[np.ndarray, np.ndarray]:
    return synthesize(*ANISOTROPIC, seed=3)


def _boundary(labels: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Voxels with a differently labelled face neighbour along one of `axes`."""
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in axes:
        change = np.diff(labels, axis=axis) != 0
        lower = [slice(None)] * labels.ndim
        upper = [slice(None)] * labels.ndim
        lower[axis] = slice(None, -1)
        upper[axis] = slice(1, None)
        edge[tuple(lower)] |= change
        edge[tuple(upper)] |= change
    return edge


@pytest.mark.parametrize(("shape", "voxel_size"), [ANISOTROPIC, ISOTROPIC, PLANE])
def test_shapes_dtypes_and_dense_consecutive_ids(
    shape: tuple[int, ...], voxel_size: tuple[float, ...]
) -> None:
    raw, labels = synthesize(shape, voxel_size, seed=1)
    assert raw.shape == labels.shape == shape
    assert raw.dtype == np.uint8
    assert labels.dtype == np.uint64
    ids = np.unique(labels)
    assert ids[0] == 1  # no background
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))


@pytest.mark.parametrize(("shape", "voxel_size"), [ANISOTROPIC, ISOTROPIC, PLANE])
def test_each_id_is_one_connected_piece(
    shape: tuple[int, ...], voxel_size: tuple[float, ...]
) -> None:
    _, labels = synthesize(shape, voxel_size, seed=2)
    for index, box in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        _, count = ndimage.label(labels[box] == index)
        assert count == 1, f"label {index} has {count} pieces"


def test_same_arguments_give_identical_output() -> None:
    first = synthesize(*ISOTROPIC, seed=7)
    second = synthesize(*ISOTROPIC, seed=7)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_another_seed_gives_another_volume() -> None:
    raw_a, labels_a = synthesize(*PLANE, seed=0)
    raw_b, labels_b = synthesize(*PLANE, seed=1)
    assert np.mean(raw_a != raw_b) > 0.5
    assert np.mean(labels_a != labels_b) > 0.5


def test_membranes_are_clearly_darker_than_interiors(
    anisotropic: tuple[np.ndarray, np.ndarray],
) -> None:
    raw, labels = anisotropic
    membrane = _boundary(labels, axes=(1, 2))
    # Interior: at least 3 voxels in y and x from any in-plane boundary.
    interior = ~ndimage.binary_dilation(membrane, np.ones((1, 7, 7), dtype=bool))
    assert interior.mean() > 0.3
    assert raw[interior].mean() - raw[membrane].mean() > 40


def test_membranes_are_darker_in_2d() -> None:
    raw, labels = synthesize(*PLANE, seed=4)
    membrane = _boundary(labels, axes=(0, 1))
    interior = ~ndimage.binary_dilation(membrane, np.ones((7, 7), dtype=bool))
    assert raw[interior].mean() - raw[membrane].mean() > 40


def test_anisotropic_cells_span_more_voxels_in_plane(
    anisotropic: tuple[np.ndarray, np.ndarray],
) -> None:
    _, labels = anisotropic
    extents = np.array(
        [[s.stop - s.start for s in box] for box in ndimage.find_objects(labels.astype(np.int64))]
    )
    # Cells are about round in nm, so a 40 nm section holds a tenth of what 4 nm pixels
    # do; border cells are clipped, hence the median and a loose bound.
    z, y, x = np.median(extents, axis=0)
    assert min(y, x) > 4 * z


def test_default_cell_size_gives_expected_cell_counts(
    anisotropic: tuple[np.ndarray, np.ndarray],
) -> None:
    _, labels = anisotropic
    assert 70 <= labels.max() <= 180
    middle = labels[labels.shape[0] // 2]
    assert 8 <= len(np.unique(middle)) <= 30
    _, plane = synthesize(*PLANE, seed=3)
    assert 30 <= plane.max() <= 80


def test_cell_size_sets_cell_count() -> None:
    _, small = synthesize(*PLANE, seed=0, cell_size_nm=60.0)
    _, large = synthesize(*PLANE, seed=0, cell_size_nm=200.0)
    assert small.max() > 4 * large.max()


@pytest.mark.parametrize(
    ("shape", "voxel_size", "cell_size_nm", "match"),
    [
        ((32, 64, 64), (4.0, 4.0), None, "voxel_size .* 2 values but shape"),
        ((64, 64), (40.0, 4.0, 4.0), None, "voxel_size .* 3 values but shape"),
        ((64,), (4.0,), None, "give 2 .* or 3"),
        ((8, 8, 8, 8), (4.0, 4.0, 4.0, 4.0), None, "give 2 .* or 3"),
        ((32, 64, 64), (40.0, 0.0, 4.0), None, "must be positive"),
        ((32, 64, 64), (40.0, -4.0, 4.0), None, "must be positive"),
        ((4, 64, 64), (40.0, 4.0, 4.0), None, "smaller than 8"),
        ((64, 64), (4.0, 4.0), 0.0, "cell_size_nm"),
        ((64, 64), (4.0, 4.0), -10.0, "cell_size_nm"),
    ],
)
def test_bad_arguments_raise_input_error(
    shape: tuple[int, ...],
    voxel_size: tuple[float, ...],
    cell_size_nm: float | None,
    match: str,
) -> None:
    with pytest.raises(InputError, match=match) as caught:
        synthesize(shape, voxel_size, cell_size_nm=cell_size_nm)
    assert "\n" not in str(caught.value)
