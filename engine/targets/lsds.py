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

With downsampling (as in the reference: labels strided by d, statistics on that grid,
each value repeated over its d**dims block) everything is done on the coarse grid: a
voxel whose block corner has its own label takes the corner's LSD, and only the voxels
at label boundaries, whose corner holds another label, need their label's statistics at
that corner, once per (corner, label) pair. So the cost falls with d**dims, as the
reference's does. A `window` restricts the work to the voxels a caller wants (a
training batch's output, not the context around it).
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
    window: Sequence[slice] | None = None,
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
        window: compute only these voxels (one slice per axis, step 1), equal to
            ``compute_lsds(labels, …)[:, *window]``: the labels outside the window
            still count, but no statistics are made for their voxels.

    Returns:
        float32 array (C, *shape), shape that of `labels` (or of `window`), C = 10 in 3D,
        6 in 2D, values in [0, 1]. 3D channels: mean offset z, y, x (offset / sigma *
        0.5 + 0.5); variance z, y, x (/ sigma²); Pearson zy, zx, yx (* 0.5 + 0.5); size
        (Gaussian mass). 2D: offset y, x; variance y, x; Pearson yx; size. Background
        voxels (and labels not computed) are 0 in every channel.

    Raises:
        InputError: bad dimensions, sigma, voxel size, downsample factor or window.
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
    begin, end = _window(window, labels.shape)

    out_shape = tuple(e - b for b, e in zip(begin, end, strict=True))
    if 0 in out_shape:
        return np.zeros((channels, *out_shape), dtype=np.float32)

    # Everything below works on the downsampled grid ("corners": its points, one per
    # df**dims block of voxels). A voxel takes the statistics of its label at its
    # block's corner. Where the corner has the voxel's own label (most voxels), that is
    # the corner's LSD on the coarse grid; the others ("foreign" voxels, at label
    # boundaries) need their label's statistics at a corner of another label.
    sub = labels[tuple(slice(None, None, df) for _ in range(dims))]
    ids, sub_inverse = _relabel(sub)
    wanted = ids != 0
    if labels_to_compute is not None:
        wanted &= np.isin(ids, _as_ids(labels_to_compute, labels.dtype))

    # the window's corners, and the window grown to whole blocks
    lo = np.array(begin) // df
    hi = (np.array(end) - 1) // df + 1
    corner_shape = tuple(int(n) for n in hi - lo)
    blocks = np.ascontiguousarray(labels[tuple(slice(a * df, b * df) for a, b in zip(lo, hi))])
    blocks = blocks.reshape(tuple(x for n in corner_shape for x in (n, df)))
    if labels_to_compute is None:
        keep = blocks != 0
    else:
        keep = np.isin(blocks, ids[wanted])
        missed = np.setdiff1d(_as_ids(labels_to_compute, labels.dtype), ids)
        if missed.size:
            keep |= np.isin(blocks, missed)

    # Pairs (corner, label) of the foreign voxels, each computed once.
    foreign_voxels = np.empty(0, dtype=np.intp)
    pair_points = np.empty(0, dtype=np.intp)
    pair_ids = np.empty(0, dtype=np.intp)
    voxel_pair = np.empty(0, dtype=np.intp)
    if df > 1:
        corner_label = sub[tuple(map(slice, lo, hi))].reshape(_spread_shape(corner_shape))
        foreign_voxels = np.flatnonzero(keep & (blocks != corner_label))
    if foreign_voxels.size:
        where = np.unravel_index(foreign_voxels, blocks.shape)
        points = np.ravel_multi_index(where[::2], corner_shape)
        values = blocks.reshape(-1)[foreign_voxels]
        # a label absent from the coarse grid gets index len(ids): it has no mass anywhere
        index = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
        index = np.where(ids[index] == values, index, len(ids))
        keys, voxel_pair = np.unique(points * (len(ids) + 1) + index, return_inverse=True)
        pair_points, pair_ids = np.divmod(keys, len(ids) + 1)
    logger.debug(
        "LSDs of %d voxels in %s: %d foreign pairs, sigma %s, downsample %d",
        int(np.prod(out_shape)),
        labels.shape,
        len(pair_points),
        sigma_t,
        df,
    )
    coarse, paired = _requested_descriptors(
        sub_inverse, wanted, lo, hi, pair_points, pair_ids, sigma_t, voxel_t, df
    )

    # Upsample: every voxel of a block takes its corner's values, then the foreign
    # voxels take theirs and voxels not computed are cleared.
    fine = np.empty((channels, *blocks.shape), dtype=np.float32)
    fine[...] = coarse.reshape((channels, *_spread_shape(corner_shape)))
    fine = fine.reshape(channels, -1)
    if foreign_voxels.size:
        fine[:, foreign_voxels] = paired[:, voxel_pair]
    fine *= keep.reshape(1, -1)
    fine = fine.reshape((channels, *(n * df for n in corner_shape)))
    crop = tuple(slice(b - a * df, e - a * df) for a, b, e in zip(lo, begin, end, strict=True))
    result: np.ndarray = fine[(slice(None), *crop)]
    return np.clip(result, 0.0, 1.0, out=result)


def _window(
    window: Sequence[slice] | None, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The window's begin and end per axis, or InputError."""
    if window is None:
        return (0,) * len(shape), shape
    window = tuple(window)
    if len(window) != len(shape) or not all(isinstance(w, slice) for w in window):
        raise InputError(f"LSD window {window} needs one slice per axis of labels {shape}")
    begin, end = [], []
    for w, n in zip(window, shape, strict=True):
        start, stop, step = w.indices(n)
        if step != 1 or stop < start:
            raise InputError(f"LSD window {window} must be contiguous slices within {shape}")
        begin.append(start)
        end.append(stop)
    return tuple(begin), tuple(end)


def _spread_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """`shape` with a unit axis after each axis: a coarse array that broadcasts over
    the (n0, df, n1, df, …) view of its blocks."""
    return tuple(x for n in shape for x in (n, 1))


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(labels, return_inverse=True)` (inverse in labels' shape), without the
    sort when the ids are small integers, as most label volumes' are."""
    if labels.size and labels.dtype.kind in "ui":
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < 4 * labels.size + (1 << 16):
            present = np.zeros(high + 1, dtype=np.intp)
            present[labels.reshape(-1)] = 1
            ids = np.flatnonzero(present).astype(labels.dtype)
            lookup = np.cumsum(present) - 1
            return ids, lookup[labels]
    ids, inverse = np.unique(labels, return_inverse=True)
    return ids, inverse.reshape(labels.shape)


def _requested_descriptors(
    sub_inverse: np.ndarray,
    wanted: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    pair_points: np.ndarray,
    pair_ids: np.ndarray,
    sigma: tuple[float, ...],
    voxel_size: tuple[float, ...],
    df: int,
) -> tuple[np.ndarray, np.ndarray]:
    """LSDs at the corners from `lo` to `hi` on the coarse grid `sub_inverse`.

    Returns (C, n_corners) with each corner's LSD for its own label where `wanted`
    (indexed as the grid's ids), else 0; and (C, P) with label `pair_ids[i]` at corner
    `pair_points[i]` (flat among the corners; label index len(wanted) stands for a
    label without voxels on the grid, hence without mass).
    """
    dims = sub_inverse.ndim
    corner_shape = tuple(int(n) for n in hi - lo)
    n_corners = int(np.prod(corner_shape))
    # corners first, then the pairs: one destination index for both
    result = np.zeros((lsd_channels(dims), n_corners + len(pair_points)), dtype=np.float32)
    sub_voxel = tuple(v * df for v in voxel_size)
    kernels = _KernelBank(sigma, sub_voxel, sub_inverse.shape)
    pair_where = np.stack(np.unravel_index(pair_points, corner_shape)) + lo[:, None]
    pair_order = np.argsort(pair_ids, kind="stable")
    pair_labels, pair_first = np.unique(pair_ids[pair_order], return_index=True)
    pairs_of: dict[int, np.ndarray] = {}
    if len(pair_order):
        groups = np.split(pair_order, pair_first[1:])
        pairs_of = dict(zip(pair_labels.tolist(), groups, strict=True))
    no_pairs = np.empty(0, dtype=np.intp)
    # find_objects wants labels 1..n; index k of `boxes` is the box of ids[k]
    boxes = ndimage.find_objects(sub_inverse + 1)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    gathered = 0

    def flush() -> None:
        """Turn the moments gathered so far into LSDs, many labels per numpy call but in
        slices of bounded size (each point takes some 300 bytes of temporaries)."""
        if not parts:
            return
        moments, where, destination = (
            np.concatenate(p, axis=-1) if len(parts) > 1 else p[0] for p in zip(*parts)
        )
        parts.clear()
        for start in range(0, len(destination), _FLUSH_VOXELS):
            part = slice(start, start + _FLUSH_VOXELS)
            result[:, destination[part]] = _descriptors(
                moments[:, part], where[:, part], sigma, sub_voxel
            )

    unwanted_pairs = [k for k in pairs_of if k >= len(wanted) or not wanted[k]]
    for k in [*np.flatnonzero(wanted).tolist(), *unwanted_pairs]:
        members = pairs_of.get(k, no_pairs)
        box = boxes[k] if k < len(boxes) else None
        if box is None:
            if not len(members):
                continue
            points = pair_where[:, members]
            moments = np.zeros((len(kernels.exponent_table), len(members)))
            destination = n_corners + members
        else:
            box_lo = np.array([s.start for s in box])
            mask = sub_inverse[box] == k
            # the label's own corners: its grid voxels within the window
            own_lo = np.maximum(box_lo, lo)
            own_hi = np.minimum(box_lo + np.array(mask.shape), hi)
            own = np.empty((dims, 0), dtype=np.intp)
            if wanted[k] and np.all(own_hi > own_lo):
                inside = mask[tuple(map(slice, own_lo - box_lo, own_hi - box_lo))]
                own = np.stack(np.nonzero(inside)) + own_lo[:, None]
            points = np.concatenate([own, pair_where[:, members]], axis=1)
            if not points.shape[1]:
                continue
            moments = _label_moments(mask.astype(np.float64), box_lo, points, kernels)
            destination = np.concatenate(
                [np.ravel_multi_index(tuple(own - lo[:, None]), corner_shape), n_corners + members]
            )
        parts.append((moments, points, destination))
        gathered += len(destination)
        if gathered >= _FLUSH_VOXELS:
            flush()
            gathered = 0
    flush()
    return result[:, :n_corners], result[:, n_corners:]


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
    mask: np.ndarray, box_lo: np.ndarray, points: np.ndarray, kernels: _KernelBank
) -> np.ndarray:
    """Gaussian moments (degree <= 2, about the point) of `mask` at `points`.

    `mask` is the label's mask over its bounding box, which starts at `box_lo`;
    `points` (dims, N) are grid coordinates, inside the box or not. Returns
    (len(_exponents(dims)), N), rows in `_exponents` order. The filters read only the
    box (the mask is 0 beyond it) and write only the points' bounding box, in tiles of
    at most `_TILE` voxels per axis.
    """
    dims = mask.ndim
    box_hi = box_lo + np.array(mask.shape)
    moments = np.zeros((len(kernels.exponent_table), points.shape[1]))
    out_lo = points.min(axis=1)
    span = points.max(axis=1) + 1 - out_lo
    tiles = -(-span // _TILE)
    groups: list[tuple[slice | np.ndarray, np.ndarray, np.ndarray]]
    if tiles.max() == 1:
        # one tile, the common case: spare the sort (per-label overhead is the cost)
        groups = [(slice(None), out_lo, out_lo + span)]
    else:
        tile_of = np.ravel_multi_index(tuple((points - out_lo[:, None]) // _TILE), tuple(tiles))
        order = np.argsort(tile_of, kind="stable")
        _, first = np.unique(tile_of[order], return_index=True)
        groups = []
        for start, stop in zip(first, [*first[1:], len(order)], strict=True):
            tile = order[start:stop]
            # the tile shrunk to its points: a label's last tile is often small
            groups.append((tile, points[:, tile].min(axis=1), points[:, tile].max(axis=1) + 1))
    for members, lo, hi in groups:
        local = points[:, members]
        in_lo = np.maximum(lo - kernels.radius, box_lo)
        in_hi = np.minimum(hi + kernels.radius, box_hi)
        if np.any(in_hi <= in_lo):
            continue  # no mass within reach
        mats = [
            kernels.matrices(d, int(lo[d] - in_lo[d]), int(hi[d] - lo[d]), int(in_hi[d] - in_lo[d]))
            for d in range(dims)
        ]
        tile_mask = mask[tuple(map(slice, in_lo - box_lo, in_hi - box_lo))]
        offsets = tuple(local - lo[:, None])
        moments[:, members] = _moments_at(tile_mask, offsets, mats, kernels.exponent_table)
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
