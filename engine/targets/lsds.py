"""Local Shape Descriptors (LSDs) of a label volume, numerically equal to `lsd_lite`.

For every label, every voxel of that label gets the Gaussian-weighted statistics of the
label's voxels around it (Sheridan et al., Nature Methods 2022; DESIGN.md, "LSDs"):
mean offset, variances, Pearson coefficients and size. The Gaussian has `sigma` in world
units and is truncated at 3 sigma per axis, exactly like `scipy.ndimage.gaussian_filter`
with `truncate=3`, which the reference `lsd_lite.get_lsds` uses.

Why this is fast: the reference filters the whole volume ten times per label. Here, for a
label L with mask m, only values at L's own voxels are needed, and m is zero outside L's
bounding box B, so every separable filter pass maps B to B: the rest of the volume never
takes part. On B each 1D pass is one small dense matrix product (BLAS) along one axis,
with the three kernels ``phi(k) * k**a`` (a = 0, 1, 2, k the offset from the output
voxel) stacked, so three products give every moment of degree <= 2. Moments about the
output voxel make the first moment the mean offset itself and spare the second moments
the cancellation of large absolute coordinates. That cancellation, in float32, is the
main difference from the reference: up to a few 1e-4 on the Pearson channels of thin
objects, and arbitrary where a label is exactly flat along an axis within reach (the
reference divides its rounding noise by the variance floor; here that Pearson is 0.5).
Labels with large boxes are done in tiles, so memory stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from engine.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["compute_lsds", "lsd_channels"]

# The reference truncates its Gaussian here (scipy's `truncate`, in sigmas).
_TRUNCATE = 3.0
# The reference floors variances at this value (nm², before dividing by sigma²) so that
# the Pearson coefficients never divide by zero.
_MIN_VARIANCE = 1e-3


def lsd_channels(dims: int) -> int:
    """Number of LSD channels for `dims` spatial dimensions: 10 in 3D, 6 in 2D."""
    if dims == 3:
        return 10
    if dims == 2:
        return 6
    raise InputError(f"LSDs exist for 2D and 3D labels only, got {dims} dimensions")


def gaussian_radius(sigma_voxels: float) -> int:
    """Reach, in voxels, of the truncated Gaussian of `sigma_voxels` (as scipy rounds it)."""
    return int(_TRUNCATE * float(sigma_voxels) + 0.5)


def compute_lsds(
    labels: np.ndarray,
    sigma: float | Sequence[float],
    voxel_size: Sequence[float],
    downsample: int = 1,
    labels_to_compute: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Compute the LSDs of a 2D or 3D label array.

    Args:
        labels: integer label array (z, y, x) or (y, x); 0 is background.
        sigma: Gaussian sigma in world units (nm), one value or one per axis.
        voxel_size: voxel size in world units, one per axis (z first).
        downsample: compute the statistics on ``labels[::d, ::d, ::d]`` and repeat each
            value over its d**dims block (as the reference does); every axis of
            `labels` must be divisible by it.
        labels_to_compute: restrict the LSDs to these ids; other voxels stay 0.

    Returns:
        float32 array (C, *labels.shape), C = 10 in 3D, 6 in 2D, values in [0, 1].
        3D channels: mean offset z, y, x (offset / sigma * 0.5 + 0.5); variance z, y, x
        (/ sigma²); Pearson zy, zx, yx (* 0.5 + 0.5); size (Gaussian mass). 2D: offset y,
        x; variance y, x; Pearson yx; size. Background voxels (and labels not computed)
        are 0 in every channel.

    Raises:
        InputError: bad dimensions, sigma, voxel size or downsample factor.
    """
    labels = np.asarray(labels)
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    dims = labels.ndim
    channels = lsd_channels(dims)
    if labels.dtype.kind not in "iub":
        raise InputError(f"LSD labels must be an integer array, got dtype {labels.dtype}")
    sigma_t = _per_axis("sigma", sigma, dims)
    voxel_t = _per_axis("voxel_size", voxel_size, dims)
    if not isinstance(downsample, int | np.integer) or downsample < 1:
        raise InputError(f"LSD downsample must be a positive integer, got {downsample!r}")
    df = int(downsample)
    if any(s % df for s in labels.shape):
        raise InputError(f"LSD labels shape {labels.shape} is not divisible by downsample {df}")

    out = np.zeros((channels, labels.size), dtype=np.float32)
    if labels.size == 0:
        return out.reshape((channels, *labels.shape))

    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    wanted = ids != 0
    if labels_to_compute is not None:
        wanted &= np.isin(ids, _as_ids(labels_to_compute, labels.dtype))
    if not wanted.any():
        return out.reshape((channels, *labels.shape))

    sub_inverse = inverse[tuple(slice(None, None, df) for _ in range(dims))]
    sub_voxel = tuple(v * df for v in voxel_t)
    kernels = _KernelBank(sigma_t, sub_voxel, sub_inverse.shape)

    # find_objects wants labels 1..n; index k of `boxes` is the box of ids[k]
    boxes = ndimage.find_objects(inverse + 1)
    flat_parts: list[np.ndarray] = []
    moment_parts: list[np.ndarray] = []
    corner_parts: list[np.ndarray] = []

    def flush() -> None:
        """Turn the moments gathered so far into LSDs, many labels per numpy call but in
        slices of bounded size (each voxel takes some 300 bytes of temporaries)."""
        if not flat_parts:
            return
        # a single large label needs no copy
        flat = flat_parts[0] if len(flat_parts) == 1 else np.concatenate(flat_parts)
        moments = moment_parts[0] if len(moment_parts) == 1 else np.concatenate(moment_parts, 1)
        grid_corners = np.concatenate(corner_parts, axis=1) if corner_parts else None
        for start in range(0, len(flat), _FLUSH_VOXELS):
            part = slice(start, start + _FLUSH_VOXELS)
            out[:, flat[part]] = _descriptors(
                moments[:, part],
                None if grid_corners is None else grid_corners[:, part],
                sigma_t,
                sub_voxel,
            )
        for parts in (flat_parts, moment_parts, corner_parts):
            parts.clear()

    logger.debug(
        "LSDs of %d labels in %s, sigma %s, downsample %d", wanted.sum(), labels.shape, sigma_t, df
    )
    gathered = 0
    for k in np.flatnonzero(wanted):
        box = boxes[k]
        if box is None:
            continue
        starts = np.array([s.start for s in box])
        inside = inverse[box] == k
        voxels = tuple(i + s for i, s in zip(np.nonzero(inside), starts, strict=True))
        flat_parts.append(np.ravel_multi_index(voxels, labels.shape))
        if df == 1:
            mask, corners, lo = inside, voxels, starts
        else:
            # Each voxel takes the statistics of its block's corner on the downsampled
            # grid. The label's mask on that grid lies within the corners of its own
            # voxels, so their box is all the filters need.
            corners = tuple(i // df for i in voxels)
            lo = starts // df
            hi = np.array([s.stop - 1 for s in box]) // df + 1
            mask = sub_inverse[tuple(map(slice, lo, hi))] == k
            corner_parts.append(np.stack(corners))
        local = tuple(c - a for c, a in zip(corners, lo, strict=True))
        moment_parts.append(_label_moments(mask.astype(np.float64), local, kernels))
        gathered += len(voxels[0])
        if gathered >= _FLUSH_VOXELS:
            flush()
            gathered = 0
    flush()
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape((channels, *labels.shape))


def _per_axis(name: str, value: float | Sequence[float], dims: int) -> tuple[float, ...]:
    """`value` as one positive float per axis, or InputError naming `name`."""
    if np.ndim(value) == 0:
        values = (float(value),) * dims  # type: ignore[arg-type]
    else:
        values = tuple(float(v) for v in value)  # type: ignore[union-attr]
    if len(values) != dims:
        raise InputError(
            f"LSD {name} {tuple(values)} needs {dims} values, one per axis of the {dims}D labels"
        )
    if not all(v > 0 and np.isfinite(v) for v in values):
        raise InputError(f"LSD {name} must be positive, got {tuple(values)}")
    return values


def _as_ids(ids: Sequence[int] | np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`ids` in the labels' dtype (comparing uint64 with int64 would go through float64
    and merge ids above 2**53), or InputError if one does not fit."""
    try:
        values = np.asarray(ids)
        if values.dtype.kind not in "iub":
            raise TypeError(f"dtype {values.dtype}")
        limits = np.iinfo(dtype)
        if values.size and (values.min() < limits.min or values.max() > limits.max):
            raise OverflowError(f"ids outside [{limits.min}, {limits.max}]")
        return values.astype(dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(
            f"LSD labels_to_compute must be integer ids of the labels' dtype {dtype}: {exc}"
        ) from exc


def _exponents(dims: int) -> list[tuple[int, ...]]:
    """The moment exponents in the order `_moments_at` returns them.

    Mass first, then the first moments per axis, then the second moments (i, j), i <= j,
    in row-major order.
    """
    unit = [tuple(int(i == d) for i in range(dims)) for d in range(dims)]
    second = [
        tuple(a + b for a, b in zip(unit[i], unit[j], strict=True))
        for i in range(dims)
        for j in range(i, dims)
    ]
    return [(0,) * dims, *unit, *second]


class _KernelBank:
    """Per axis, the matrices that filter a range of one axis, cached by their geometry.

    Row i, column j of moment matrix a holds ``phi(k) * (k * h / sigma) ** a`` with
    ``k = j - i`` the offset from output to input voxel, `phi` the axis' truncated,
    normalised Gaussian and h its voxel size: applied to a mask, row i gives the a-th
    moment of the mask about voxel i, in units of sigma.
    """

    def __init__(
        self, sigma: tuple[float, ...], voxel_size: tuple[float, ...], shape: tuple[int, ...]
    ):
        self.radius: list[int] = []
        self._tables: list[np.ndarray] = []
        for s, h, n in zip(sigma, voxel_size, shape, strict=True):
            sigma_voxels = s / h
            radius = gaussian_radius(sigma_voxels)
            # every offset two voxels of this axis can have; beyond the radius phi is 0
            offsets = np.arange(-(n - 1), n, dtype=np.float64)
            phi = np.exp(-0.5 / sigma_voxels**2 * offsets**2)
            phi[np.abs(offsets) > radius] = 0.0
            support = np.arange(-radius, radius + 1, dtype=np.float64)
            phi /= np.exp(-0.5 / sigma_voxels**2 * support**2).sum()
            u = offsets * h / s
            self.radius.append(radius)
            self._tables.append(np.stack([phi, phi * u, phi * u * u]))
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}
        self.exponent_table = np.array(_exponents(len(sigma)))

    def matrices(self, axis: int, shift: int, n_out: int, n_in: int) -> np.ndarray:
        """(3 * n_out, n_in): the moment matrices a = 0, 1, 2 stacked along the rows, for
        `n_out` output voxels starting `shift` voxels into `n_in` input voxels."""
        key = (axis, shift, n_out, n_in)
        cached = self._cache.get(key)
        if cached is None:
            table = self._tables[axis]
            centre = (table.shape[1] - 1) // 2
            rows = shift + np.arange(n_out)
            cached = table[:, centre + np.arange(n_in)[None, :] - rows[:, None]]
            cached = cached.reshape(3 * n_out, n_in)
            self._cache[key] = cached
        return cached


# Voxels whose moments are gathered before they are turned into LSDs, and the most
# turned at once.
_FLUSH_VOXELS = 1 << 18

# Output tile edge (voxels) for labels with large boxes: bounds the memory of the 3**dims
# filtered images (27 * 64**3 doubles = 57 MB) and keeps the dense matrices close to
# the Gaussian's band. Small boxes, the common case, are one tile.
_TILE = 64


def _label_moments(
    mask: np.ndarray, points: tuple[np.ndarray, ...], kernels: _KernelBank
) -> np.ndarray:
    """Gaussian moments (degree <= 2, about the point) of `mask` at `points` in its box.

    Returns (len(_exponents(dims)), N), rows in `_exponents` order. Values outside the
    box are taken as 0, which is exact here because the mask is 0 there.
    """
    shape = mask.shape
    dims = mask.ndim
    if max(shape) <= _TILE:
        mats = [kernels.matrices(d, 0, n, n) for d, n in enumerate(shape)]
        return _moments_at(mask, points, mats, kernels.exponent_table)

    moments = np.empty((len(kernels.exponent_table), len(points[0])))
    tile_of = np.ravel_multi_index(
        tuple(p // _TILE for p in points), tuple(-(-n // _TILE) for n in shape)
    )
    order = np.argsort(tile_of, kind="stable")
    tiles, first = np.unique(tile_of[order], return_index=True)
    bounds = [*first[1:], len(order)]
    for tile, start, stop in zip(tiles, first, bounds, strict=True):
        members = order[start:stop]
        out_lo = [int(t) * _TILE for t in np.unravel_index(tile, [-(-n // _TILE) for n in shape])]
        out_hi = [min(lo + _TILE, n) for lo, n in zip(out_lo, shape, strict=True)]
        in_lo = [max(lo - r, 0) for lo, r in zip(out_lo, kernels.radius, strict=True)]
        in_hi = [min(hi + r, n) for hi, r, n in zip(out_hi, kernels.radius, shape, strict=True)]
        mats = [
            kernels.matrices(d, out_lo[d] - in_lo[d], out_hi[d] - out_lo[d], in_hi[d] - in_lo[d])
            for d in range(dims)
        ]
        local = tuple(p[members] - lo for p, lo in zip(points, out_lo, strict=True))
        tile_mask = mask[tuple(map(slice, in_lo, in_hi))]
        moments[:, members] = _moments_at(tile_mask, local, mats, kernels.exponent_table)
    return moments


def _moments_at(
    mask: np.ndarray,
    points: tuple[np.ndarray, ...],
    mats: list[np.ndarray],
    exponents: np.ndarray,
) -> np.ndarray:
    """Filter `mask` with the stacked moment matrices `mats` (one per axis) and read the
    moments of the given `exponents` (E, dims) at `points` (output coordinates): (E, N).

    Boxes are small (a few thousand voxels), so numpy's per-call overhead, not
    arithmetic, is the cost: every axis is filtered with all three moment kernels at once
    (3**dims images, of which only the degree <= 2 ones are read), which takes one matrix
    product per axis.
    """
    dims = mask.ndim
    shape_in = mask.shape
    shape_out = tuple(m.shape[0] // 3 for m in mats)
    # Filter the last axis first, then contract each earlier axis in turn; `image` keeps
    # the unfiltered axes in front and the filtered ones, each grown to (3, n_out),
    # behind.
    image = mask.reshape(-1, shape_in[-1]) @ mats[-1].T
    for axis in range(dims - 2, -1, -1):
        image = mats[axis] @ image.reshape((*shape_in[:axis], shape_in[axis], -1))
    image = image.reshape(tuple(x for n in shape_out for x in (3, n)))
    index: list[np.ndarray] = []
    for d, p in enumerate(points):
        index.extend((exponents[:, d, None], p[None, :]))
    moments: np.ndarray = image[tuple(index)]
    return moments


def _descriptors(
    moments: np.ndarray,
    corners: np.ndarray | None,
    sigma: tuple[float, ...],
    sub_voxel: tuple[float, ...],
) -> np.ndarray:
    """LSD channels from per-voxel moments (rows ordered as `_exponents`), unclipped.

    `corners` (dims, N) is each voxel's position on the downsampled grid (None without
    downsampling); it only matters where the label has no mass within reach of that grid
    point (see below), which cannot happen without downsampling.
    """
    dims = len(sigma)
    mass = moments[0]
    empty = mass == 0
    safe_mass = np.where(empty, 1.0, mass)
    offset = moments[1 : 1 + dims] / safe_mass  # in sigmas

    sig = np.asarray(sigma)[:, None]
    pairs = [(i, j) for i in range(dims) for j in range(i, dims)]
    cov = {
        (i, j): moments[1 + dims + n] / safe_mass - offset[i] * offset[j]
        for n, (i, j) in enumerate(pairs)
    }
    # the floor is in nm², so it is applied to the variance in world units
    variance_nm = np.stack(
        [np.maximum(cov[(d, d)] * sigma[d] ** 2, _MIN_VARIANCE) for d in range(dims)]
    )
    # 3D: zy, zx, yx (the paper's order); 2D: yx
    off_diagonal = [(i, j) for i in range(dims) for j in range(i + 1, dims)]
    pearson = [
        cov[(i, j)] * (sigma[i] * sigma[j]) / (2.0 * np.sqrt(variance_nm[i] * variance_nm[j])) + 0.5
        for i, j in off_diagonal
    ]

    mean_offset = offset * 0.5 + 0.5
    if corners is not None and empty.any():
        # Where the label has no mass within reach (only possible with downsample > 1),
        # the reference's centre of mass is 0 in absolute coordinates of the array, so
        # its offset is minus the grid position; kept for equality with it.
        position = corners[:, empty] * np.asarray(sub_voxel)[:, None]
        mean_offset[:, empty] = -position / sig * 0.5 + 0.5

    return np.concatenate(
        [mean_offset, variance_nm / sig**2, np.stack(pearson), mass[None]]
    ).astype(np.float32)
