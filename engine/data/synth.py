"""Deterministic EM-like synthetic volumes with dense labels: the built-in demo data.

The labels are a warped power-Voronoi tessellation of random seed points placed in
physical (nm) space, so cells keep their physical shape whatever the voxel size: with
(40, 4, 4) nm voxels a cell spans ten times more voxels in y and x than in z. The raw
image paints the label boundaries as dark membranes on a textured grey cytoplasm with a
few dark organelle-like blobs, then blurs and adds noise, so a small network can learn
to find the boundaries without the task being a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.errors import InputError

# Default cell diameter, in voxels: at least this many of the finest axis, so membranes
# are well separated in-plane, and at least this many of the coarsest axis, so that with
# anisotropic sections a cell spans enough sections for z boundaries to be learnable.
_CELLS_ACROSS_FINEST = 24
_CELLS_ACROSS_COARSEST = 6
_MIN_AXIS = 8

# Grey levels (uint8 scale) before blur and noise.
_CYTOPLASM = 172.0
_MEMBRANE = 52.0
_CELL_CONTRAST = 9.0  # std of the per-cell brightness offset
_TEXTURE = 11.0  # amplitude of the low-frequency cytoplasm texture
_GRAIN = 9.0  # noise added before the blur: a correlated, EM-like grain
_NOISE = 7.0  # noise added after the blur: white detector noise
_BLOBS_PER_CELL = 3.0  # most are smaller than a 40 nm section, so few show per slice


def synthesize(
    shape: Sequence[int],
    voxel_size: Sequence[float],
    seed: int = 0,
    cell_size_nm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (raw uint8, labels uint64), both of `shape` (2D or 3D, z first).

    `voxel_size` gives one size in nm per axis of `shape`. `cell_size_nm` is the typical
    cell diameter; by default it is the larger of 24 voxels of the finest axis and 6 of
    the coarsest (96 nm for 4 nm voxels, 240 nm for (40, 4, 4), 192 nm for 8 nm).

    Labels are dense: every voxel holds an id in 1..N, ids are consecutive, and each id
    is one face-connected component (`scipy.ndimage.label`'s default structure). Raw is
    dark (about 50 grey) on label boundaries, about 170 in cell interiors.

    The output depends only on the arguments: the same arguments give bit-identical
    arrays, another `seed` gives another volume. Raises InputError on bad arguments.
    """
    shape_t, spacing, size = _check_arguments(shape, voxel_size, cell_size_nm)
    rng = np.random.default_rng(seed)
    labels = _tessellate(shape_t, spacing, size, rng)
    # A tenth of a typical cell, in voxels: pieces below this are slivers, not cells.
    small = max(1, int(0.1 * _cell_measure(size, len(shape_t)) / np.prod(spacing)))
    labels = _split_disconnected(labels, small)
    raw = _paint(labels, spacing, size, rng)
    return raw, labels.astype(np.uint64)


def affinities_from_labels(
    labels: np.ndarray, noise: float = 0.08, seed: int = 0, low: float = 0.1, high: float = 0.9
) -> np.ndarray:
    """Affinities as a trained network predicts them, from dense labels: (dims, *shape)
    float32 in [0, 1], channel i linking each voxel to its neighbour before it on axis i.

    High (`high`) inside cells, `low` on every voxel next to a label edge (a boundary two
    voxels wide, as networks predict it, rather than the one-voxel face of the exact
    affinities, which a seeded watershed would flood across), plus Gaussian `noise`.
    For tests and benchmarks of segmentation, without training a model.
    """
    dims = labels.ndim
    inner = np.ones(labels.shape, dtype=bool)
    for axis in range(dims):
        after = [slice(None)] * dims
        before = [slice(None)] * dims
        after[axis], before[axis] = slice(1, None), slice(None, -1)
        edge = labels[tuple(after)] != labels[tuple(before)]
        inner[tuple(after)] &= ~edge
        inner[tuple(before)] &= ~edge
    rng = np.random.default_rng(seed)
    affs = np.repeat(inner[None], dims, axis=0).astype(np.float32) * np.float32(high - low)
    affs += np.float32(low)
    affs += rng.normal(0.0, noise, affs.shape).astype(np.float32)
    return np.clip(affs, 0.0, 1.0, out=affs)


def _check_arguments(
    shape: Sequence[int], voxel_size: Sequence[float], cell_size_nm: float | None
) -> tuple[tuple[int, ...], np.ndarray, float]:
    shape_t = tuple(int(s) for s in shape)
    if len(shape_t) not in (2, 3):
        raise InputError(
            f"synthesize: shape {list(shape_t)} has {len(shape_t)} axes; give 2 (y, x) "
            "or 3 (z, y, x)"
        )
    if len(voxel_size) != len(shape_t):
        raise InputError(
            f"synthesize: voxel_size {list(voxel_size)} has {len(voxel_size)} values but "
            f"shape {list(shape_t)} has {len(shape_t)} axes; give one size in nm per axis"
        )
    if min(shape_t) < _MIN_AXIS:
        raise InputError(
            f"synthesize: shape {list(shape_t)} is smaller than {_MIN_AXIS} on an axis; "
            f"use at least {_MIN_AXIS} voxels per axis"
        )
    spacing = np.asarray(voxel_size, dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"synthesize: voxel_size {list(voxel_size)} must be positive nm values")
    if cell_size_nm is None:
        size = max(_CELLS_ACROSS_FINEST * spacing.min(), _CELLS_ACROSS_COARSEST * spacing.max())
    else:
        size = float(cell_size_nm)
        if not np.isfinite(size) or size <= 0:
            raise InputError(
                f"synthesize: cell_size_nm {cell_size_nm} must be a positive number of nm"
            )
        if size < 2 * spacing.min():
            raise InputError(
                f"synthesize: cell_size_nm {size:g} is under two voxels "
                f"({spacing.min():g} nm); use a larger cell size"
            )
    return shape_t, spacing, float(size)


def _cell_measure(size: float, ndim: int) -> float:
    """Volume (area in 2D) in nm of a ball of diameter `size`: the mean cell's share."""
    return np.pi / 6 * size**3 if ndim == 3 else np.pi / 4 * size**2


def _tessellate(
    shape: tuple[int, ...], spacing: np.ndarray, size: float, rng: np.random.Generator
) -> np.ndarray:
    """Label every voxel with the power cell its warped physical position falls in."""
    ndim = len(shape)
    extent = np.asarray(shape) * spacing
    # Seeds beyond the volume keep border cells as large as inner ones.
    lo, hi = np.full(ndim, -size), extent + size
    seeds = _spread_points(lo, hi, size, rng)
    # Power weights vary cell sizes (neurites are not all alike). A power diagram is the
    # nearest-neighbour diagram of the seeds lifted by sqrt(W - w) into one more axis.
    weights = rng.uniform(0.0, (0.35 * size) ** 2, len(seeds))
    lift = np.sqrt(weights.max() - weights)
    tree = cKDTree(np.column_stack([seeds, lift]))

    # A smooth displacement bends the planar Voronoi faces into wavy membranes; a
    # finer, weaker one adds small wiggles.
    warps = [
        0.14 * size * _smooth_field(shape, spacing, 0.45 * size, rng)
        + 0.03 * size * _smooth_field(shape, spacing, 0.12 * size, rng)
        for _ in range(ndim)
    ]
    labels = np.empty(shape, dtype=np.int64)
    axes = [(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)]
    # Query in slabs along the first axis to bound the memory of the coordinate array.
    plane = int(np.prod(shape[1:]))
    step = max(1, 2**20 // plane)
    for start in range(0, shape[0], step):
        stop = min(shape[0], start + step)
        grids = np.meshgrid(axes[0][start:stop], *axes[1:], indexing="ij")
        points = np.empty((grids[0].size, ndim + 1))
        for a in range(ndim):
            points[:, a] = (grids[a] + warps[a][start:stop]).ravel()
        points[:, ndim] = 0.0
        _, nearest = tree.query(points)
        labels[start:stop] = nearest.reshape(grids[0].shape)
    return labels


def _spread_points(
    lo: np.ndarray, hi: np.ndarray, size: float, rng: np.random.Generator
) -> np.ndarray:
    """Random points at one per cell of diameter `size`, none closer than size / 2.

    Pure Poisson points give slivers of cells; sequential rejection of candidates that
    come too close to an accepted one (random sequential adsorption) avoids them.
    """
    ndim = len(lo)
    box = float(np.prod(hi - lo))
    target = max(2, round(box / _cell_measure(size, ndim)))
    candidates = rng.uniform(lo, hi, size=(3 * target, ndim))
    keep = np.ones(len(candidates), dtype=bool)
    pairs = cKDTree(candidates).query_pairs(0.5 * size, output_type="ndarray")
    # query_pairs gives i < j; visiting pairs by increasing j settles keep[i] before it
    # decides on j, which is sequential acceptance in candidate order.
    for i, j in pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]:
        if keep[i]:
            keep[j] = False
    return candidates[keep][:target]


def _smooth_field(
    shape: tuple[int, ...], spacing: np.ndarray, length_nm: float, rng: np.random.Generator
) -> np.ndarray:
    """A unit-variance smooth random field with correlation length `length_nm`.

    It sums Gaussian bumps with random weights on a lattice of pitch `length_nm`. The
    bumps are separable, so the field is a tensor product of small per-axis matrices
    with a small random lattice: cheap at any volume size.
    """
    matrices = []
    for n, s in zip(shape, spacing, strict=True):
        positions = (np.arange(n) + 0.5) * s
        centers = np.arange(-3 * length_nm, n * s + 3 * length_nm, length_nm)
        m = np.exp(-0.5 * ((positions[:, None] - centers[None, :]) / length_nm) ** 2)
        # Unit row norms give every voxel unit variance, border voxels included.
        matrices.append(m / np.linalg.norm(m, axis=1, keepdims=True))
    field = rng.standard_normal(tuple(m.shape[1] for m in matrices))
    for a, m in enumerate(matrices):
        field = np.moveaxis(np.tensordot(field, m, axes=([a], [1])), -1, a)
    return field.astype(np.float32)


def _split_disconnected(labels: np.ndarray, small: int) -> np.ndarray:
    """Make every label one face-connected piece, and renumber the labels 1..N.

    The warp and the voxel grid can cut slivers off a cell, mostly single voxels in a
    neighbouring section. A piece under `small` voxels joins the label it touches most,
    as a real membrane would enclose it; a larger one becomes a cell of its own. The
    largest piece keeps the id. Each merge removes a piece and none adds one, so the
    passes end.
    """
    next_id = int(labels.max()) + 1
    changed = True
    while changed:
        changed = False
        for index, box in enumerate(ndimage.find_objects(labels + 1)):
            if box is None:
                continue
            pieces, count = ndimage.label(labels[box] == index)
            if count < 2:
                continue
            changed = True
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            for piece in np.argsort(sizes)[::-1][1:count]:
                mask = pieces == piece
                target = _most_touching(labels, box, mask, index)
                if sizes[piece] >= small or target is None:
                    labels[box][mask] = next_id
                    next_id += 1
                else:
                    labels[box][mask] = target
    present = np.bincount(labels.ravel(), minlength=next_id) > 0
    renumber: np.ndarray = np.cumsum(present)[labels]
    return renumber


def _most_touching(
    labels: np.ndarray, box: tuple[slice, ...], mask: np.ndarray, own: int
) -> int | None:
    """The label sharing the most faces with `mask` (within `box`), other than `own`."""
    grown = tuple(
        slice(max(b.start - 1, 0), min(b.stop + 1, n))
        for b, n in zip(box, labels.shape, strict=True)
    )
    inner = tuple(
        slice(b.start - g.start, b.start - g.start + (b.stop - b.start))
        for b, g in zip(box, grown, strict=True)
    )
    region = np.zeros(tuple(g.stop - g.start for g in grown), dtype=bool)
    region[inner] = mask
    ring = ndimage.binary_dilation(region) & ~region
    around = labels[grown][ring]
    around = around[around != own]
    if around.size == 0:
        return None
    values, counts = np.unique(around, return_counts=True)
    return int(values[np.argmax(counts)])


def _paint(
    labels: np.ndarray, spacing: np.ndarray, size: float, rng: np.random.Generator
) -> np.ndarray:
    """Paint EM-like raw intensities for `labels`."""
    shape = labels.shape
    finest = spacing.min()

    # Cytoplasm: per-cell brightness plus a low-frequency texture.
    offsets = rng.normal(0.0, _CELL_CONTRAST, int(labels.max()) + 1).astype(np.float32)
    image = _CYTOPLASM + offsets[labels]
    image += _TEXTURE * _smooth_field(shape, spacing, 0.3 * size, rng)

    _darken_blobs(image, labels, spacing, size, rng)

    # Membranes: both voxels at a label change along an axis, at full strength along
    # fine axes; along a coarse axis (40 nm sections) a membrane is much thinner than a
    # voxel and only greys it a little, as partial volume does in real sections.
    membrane = np.zeros(shape, dtype=np.float32)
    for axis in range(labels.ndim):
        strength = np.float32(min(1.0, 2.0 * finest / spacing[axis]))
        lower = [slice(None)] * labels.ndim
        upper = [slice(None)] * labels.ndim
        lower[axis] = slice(None, -1)
        upper[axis] = slice(1, None)
        change = (labels[tuple(lower)] != labels[tuple(upper)]) * strength
        np.maximum(membrane[tuple(lower)], change, out=membrane[tuple(lower)])
        np.maximum(membrane[tuple(upper)], change, out=membrane[tuple(upper)])
    image += membrane * (_MEMBRANE - image)

    image += _GRAIN * rng.standard_normal(shape, dtype=np.float32)
    # The blur is physical (about one finest voxel), so sections 40 nm apart stay sharp.
    image = ndimage.gaussian_filter(image, sigma=tuple(finest / spacing), mode="nearest")
    image += _NOISE * rng.standard_normal(shape, dtype=np.float32)
    raw: np.ndarray = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return raw


def _darken_blobs(
    image: np.ndarray,
    labels: np.ndarray,
    spacing: np.ndarray,
    size: float,
    rng: np.random.Generator,
) -> None:
    """Darken a few small ellipsoids (vesicle and mitochondria-like), in place.

    A blob darkens only its own cell, so it never bridges or fakes a membrane.
    """
    ndim = labels.ndim
    extent = np.asarray(labels.shape) * spacing
    cell = _cell_measure(size, ndim)
    count = rng.poisson(_BLOBS_PER_CELL * float(np.prod(extent)) / cell)
    finest = spacing.min()
    centers = rng.uniform(0.0, extent, size=(count, ndim))
    radii = rng.uniform(1.5 * finest, min(7.0 * finest, 0.2 * size), count)
    stretch = rng.uniform(0.7, 1.6, size=(count, ndim))
    depths = rng.uniform(0.3, 0.6, count).astype(np.float32)
    for center, radius, scale, depth in zip(centers, radii, stretch, depths, strict=True):
        semi = radius * scale
        index = np.floor(center / spacing).astype(int)
        reach = np.ceil(semi / spacing).astype(int)
        lo = np.maximum(index - reach, 0)
        hi = np.minimum(index + reach + 1, labels.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        grids = np.ogrid[box]
        r2 = sum(
            (((g + 0.5) * s - c) / e) ** 2
            for g, s, c, e in zip(grids, spacing, center, semi, strict=True)
        )
        profile = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)).astype(np.float32)
        own = labels[box] == labels[tuple(index)]
        image[box] *= 1.0 - depth * profile * own


def synthesize_artifacts(sections: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Artifact sections for defect augmentation: (raw, alpha), both uint8 of shape
    (sections, size, size).

    Each section holds a few dark, smooth smudges (stains, dirt, charging) as raw, and
    their alpha mask: 255 at a smudge's core, fading to 0 over its soft edge, 0 elsewhere.
    A stand-in for a volume of real artifacts (the LSD paper pasted artifacts cut from
    CREMI's damaged sections), so that `train.augment.prob_artifact` works without one.
    """
    if sections < 1 or size < 8:
        raise InputError(
            f"artifact sections need sections >= 1 and size >= 8, got {sections}, {size}"
        )
    rng = np.random.default_rng(seed)
    raw = np.empty((sections, size, size), np.uint8)
    alpha = np.empty((sections, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for z in range(sections):
        weight = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, size, 2)
            ry, rx = rng.uniform(0.08, 0.3, 2) * size
            angle = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dy * np.cos(angle) + dx * np.sin(angle)) / ry
            v = (-dy * np.sin(angle) + dx * np.cos(angle)) / rx
            weight = np.maximum(weight, np.clip(1.5 - 1.5 * np.hypot(u, v), 0, 1))
        grain = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 3)
        raw[z] = np.clip(40 + 25 * grain, 0, 255).astype(np.uint8)
        alpha[z] = np.rint(weight * 255).astype(np.uint8)
    return raw, alpha
