"""Fragments: an over-segmentation of predicted affinities into supervoxels, block by block.

Every function here is pure (arrays in, arrays out) so that a daisy worker can call it on
one block, and a test can call it on a toy volume.

Affinities are ``(C, z, y, x)`` float32 in [0, 1]; channels 0, 1, 2 are the nearest
neighbours along z, y, x in the gunpowder convention: ``affs[d][p]`` is the affinity
between voxel ``p`` and ``p - e_d``. Further channels (long-range offsets) are only used by
the mutex watershed.

Fragments are uint64 volumes, 0 for background (boundary or masked out), 1..n otherwise;
:func:`relabel_block` then makes them unique across blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from engine.errors import InputError

logger = logging.getLogger(__name__)


def fragments_watershed(
    affs: np.ndarray,
    *,
    fragments_in_xy: bool,
    min_seed_distance: int,
    mask: np.ndarray | None = None,
    epsilon_agglomerate: float = 0.0,
    fill_boundary: bool = False,
) -> tuple[np.ndarray, int]:
    """Seeded watershed on the distance to the boundary, as in the LSD paper.

    The boundary map is the mean of the nearest-neighbour affinities (z, y and x; only y
    and x with ``fragments_in_xy``, as the paper's code does, because a section's
    fragments must not depend on the affinities to its neighbours); voxels where it is
    above 0.5 are foreground. Seeds are the foreground voxels where the Euclidean
    distance to the boundary (in voxels) equals its maximum over a window of
    ``min_seed_distance`` voxels, one seed per connected plateau; the watershed of the
    negated distance from these seeds fills the foreground, and a foreground component
    without a seed is a fragment of its own. Voxels outside ``mask`` (where it is 0) are
    background; the distance is taken before masking, as in the paper, so the mask
    does not move the boundary. Every foreground voxel in the mask gets a fragment, and
    every fragment is connected.

    With ``fill_boundary`` the fragments then grow over the boundary voxels too (a
    watershed of the boundary map from them), so that every voxel inside ``mask`` gets a
    fragment: for ground truth without boundaries (dense labels), where a 0 voxel would
    count as one huge segment.

    With ``fragments_in_xy`` each z-section is segmented on its own, and ids are unique
    across sections (section after section). With ``epsilon_agglomerate > 0`` fragments
    are then merged with waterz (mean affinity) up to that score, per section with
    ``fragments_in_xy``.

    Returns ``(fragments, n)``: uint64 of shape ``affs.shape[1:]`` with ids exactly
    ``1..n`` (0: background). Raises InputError for bad shapes or parameters.
    """
    affs = _check_affs(affs)
    if min_seed_distance < 1:
        raise InputError(f"min_seed_distance must be at least 1 voxel, not {min_seed_distance}")
    if not 0.0 <= epsilon_agglomerate < 1.0:
        raise InputError(f"epsilon_agglomerate must be in [0, 1), not {epsilon_agglomerate}")
    foreground_mask = _check_mask(mask, affs.shape[1:])

    if fragments_in_xy:
        boundary = affs[1:3].mean(axis=0)
        fragments = np.zeros(boundary.shape, dtype=np.uint64)
        n = 0
        for z in range(boundary.shape[0]):
            section_mask = None if foreground_mask is None else foreground_mask[z]
            section, count = _watershed(boundary[z], section_mask, min_seed_distance, fill_boundary)
            section[section != 0] += np.uint64(n)
            fragments[z] = section
            n += count
    else:
        fragments, n = _watershed(
            affs[:3].mean(axis=0), foreground_mask, min_seed_distance, fill_boundary
        )

    if epsilon_agglomerate > 0 and n > 0:
        fragments, n = _epsilon_agglomerate(affs, fragments, epsilon_agglomerate, fragments_in_xy)
    logger.debug("watershed: %d fragments", n)
    return fragments, n


def fragments_mutex(
    affs: np.ndarray,
    offsets: Sequence[Sequence[int]],
    *,
    bias: float | Sequence[float] = -0.5,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Mutex watershed (mwatershed) on the affinities of all ``offsets``.

    ``offsets`` has one 3-vector per affinity channel, in the gunpowder convention of
    ``train.neighborhood`` (``[-1, 0, 0]``: between ``p`` and ``p - e_z``), which is also
    mwatershed's. Edge weights are ``affs + bias``: positive weights attract, negative ones
    repel, larger magnitudes first. ``bias`` is one value or one per channel (long-range
    channels usually get a more negative bias, to split rather than merge).

    Every voxel inside ``mask`` (everywhere without one) gets a fragment; outside it is 0.
    Returns ``(fragments, n)`` with ids exactly ``1..n``.
    """
    import mwatershed  # lazy: a compiled extension only this method needs

    affs = np.asarray(affs)
    if affs.ndim != 4:
        raise InputError(f"affinities must have the shape (channels, z, y, x), not {affs.shape}")
    offsets_list = [[int(o) for o in offset] for offset in offsets]
    if len(offsets_list) != affs.shape[0] or any(len(o) != 3 for o in offsets_list):
        raise InputError(
            f"give one 3-vector offset per affinity channel: {affs.shape[0]} channels, "
            f"offsets {offsets_list}"
        )
    biases = np.broadcast_to(np.asarray(bias, dtype=np.float64), (affs.shape[0],))
    foreground_mask = _check_mask(mask, affs.shape[1:])

    weights = np.ascontiguousarray(affs, dtype=np.float64) + biases[:, None, None, None]
    labels = np.asarray(mwatershed.agglom(weights, offsets_list))
    # mwatershed's ids are arbitrary (0 may be a fragment), so every label is a fragment
    # and 0 is made background only by the mask, after the consecutive relabelling.
    _, inverse = np.unique(labels, return_inverse=True)
    fragments = inverse.reshape(labels.shape).astype(np.uint64) + np.uint64(1)
    if foreground_mask is not None:
        fragments[~foreground_mask] = 0
    return _consecutive(fragments)


def relabel_block(fragments: np.ndarray, block_index: int, block_voxels: int) -> np.ndarray:
    """Make a block's fragment ids unique across blocks: nonzero ``i`` becomes
    ``block_index * block_voxels + i``; 0 stays 0.

    The ids are a function of the block and its local ids only, with no counter shared
    between workers: whichever order daisy hands out blocks, however often a failed block
    is retried, and when a run is resumed, a block's fragments get the same ids, so what
    was already written (fragments, RAG nodes and edges) stays consistent with a rewrite.

    Local ids must lie in ``1..block_voxels``, so the ranges of blocks never overlap
    (block ``b`` uses ``b * block_voxels + 1 .. (b + 1) * block_voxels``); the number of
    voxels of a block always suffices, because a block has no more fragments than voxels.
    A fragment's block is ``(id - 1) // block_voxels``. Raises InputError when a local id
    is out of range or the ids would not fit in uint64. Returns a new uint64 array.
    """
    if block_index < 0:
        raise InputError(f"block_index must be >= 0, not {block_index}")
    if block_voxels < 1:
        raise InputError(f"block_voxels must be >= 1, not {block_voxels}")
    # Python ints: the check itself must not overflow.
    if (block_index + 1) * block_voxels > np.iinfo(np.uint64).max:
        raise InputError(
            f"block {block_index} with {block_voxels} ids a block overflows uint64 ids; "
            "use larger blocks or fewer of them"
        )
    out = np.array(fragments, dtype=np.uint64, copy=True)
    if out.size == 0:
        return out
    largest = int(out.max())
    if largest > block_voxels:
        raise InputError(
            f"local fragment id {largest} exceeds block_voxels={block_voxels}: relabel the "
            "block's fragments to 1..n first"
        )
    foreground = out != 0
    out[foreground] += np.uint64(block_index * block_voxels)
    return out


def _watershed(
    boundary: np.ndarray, mask: np.ndarray | None, min_seed_distance: int, fill: bool = False
) -> tuple[np.ndarray, int]:
    """Seeded watershed of one 2D section or 3D volume; ids 1..n."""
    foreground = boundary > 0.5
    distance = ndimage.distance_transform_edt(foreground)
    if mask is not None:
        foreground &= mask
    maxima = ndimage.maximum_filter(distance, size=min_seed_distance) == distance
    seeds, n = ndimage.label(maxima & foreground)
    labels = watershed(-distance, markers=seeds, mask=foreground)
    # A foreground component may hold no seed (a higher maximum of another component, or
    # outside the mask, lies within the window): it becomes one fragment of its own, so
    # every foreground voxel has a fragment and every fragment is connected. (The paper's
    # code floods across the boundary instead, which splits such a fragment in pieces.)
    unseeded, extra = ndimage.label(foreground & (labels == 0))
    labels[unseeded != 0] = unseeded[unseeded != 0] + n
    if fill and n + extra > 0:
        # Lowest affinity last: boundary voxels join the fragment they are closest to in
        # affinity, not in distance.
        labels = watershed(1.0 - boundary, markers=labels, mask=mask)
    return labels.astype(np.uint64), int(n + extra)


def _epsilon_agglomerate(
    affs: np.ndarray, fragments: np.ndarray, epsilon: float, per_section: bool
) -> tuple[np.ndarray, int]:
    """Merge fragments below score ``epsilon`` with waterz (mean affinity); ids 1..n."""
    from engine.segment.agglomerate import segment_whole_volume

    if not per_section:
        merged = segment_whole_volume(affs, fragments, [epsilon], "mean")[epsilon]
        return _consecutive(merged)
    out = np.zeros_like(fragments)
    for z in range(fragments.shape[0]):
        section = fragments[z : z + 1]
        if section.any():
            # A one-section volume: waterz never reads the z channel for it.
            section = segment_whole_volume(affs[:, z : z + 1], section, [epsilon], "mean")[epsilon]
        out[z : z + 1] = section
    # Merges stay within sections, so section-unique ids stay unique after relabelling.
    return _consecutive(out)


def _consecutive(fragments: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel nonzero ids to 1..n in increasing order of the old ids; 0 stays 0."""
    ids, inverse = np.unique(fragments, return_inverse=True)
    inverse = inverse.reshape(fragments.shape).astype(np.uint64)
    if ids.size and ids[0] == 0:
        return inverse, int(ids.size - 1)
    return inverse + np.uint64(1), int(ids.size)


def _check_affs(affs: np.ndarray) -> np.ndarray:
    affs = np.asarray(affs, dtype=np.float32)
    if affs.ndim != 4 or affs.shape[0] < 3:
        raise InputError(
            "affinities must have the shape (channels, z, y, x) with at least the 3 "
            f"nearest-neighbour channels, not {affs.shape}"
        )
    return affs


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise InputError(f"mask shape {mask.shape} differs from the volume shape {shape}")
    foreground: np.ndarray = mask != 0
    return foreground
