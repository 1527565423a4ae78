"""Gunpowder node: elastic deformation, rotation and section misalignment of arrays.

The deformation of gp.ElasticAugment (gunpowder 1.4), which the LSD paper trained with,
as a node of lsdctl's own on gunpowder's public BatchFilter contract: the same
parameters and the same random draws give the same deformation. Three of its steps are
faster here, all measured in bench/pipeline.py (together they took a third of a batch):
the coarse transformation is upsampled to every voxel with matrix products
(`upsample_linear`, not scipy's zoom); interpolatable arrays (raw) are interpolated
with `interpolate_linear`, in 2D where the coordinates of an axis are whole voxels
(serial sections), in cache-sized slabs; the others (labels, masks) take the nearest voxel
(`sample_nearest`), exactly as scipy's order-0 map_coordinates rounds, without its
detour through float64, which rounds label ids above 2**53.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import augment
import gunpowder as gp
import numpy as np
from funlib.geometry import Coordinate, Roi

from engine.errors import InputError

# Coordinates this close to whole voxels are taken as whole (they come out of float32
# interpolation of the identity, within about 1e-5 of it).
_WHOLE_VOXEL = 1e-3


class ElasticAugment(gp.BatchFilter):  # type: ignore[misc]
    """Deform every requested array with one random transformation: elastic jitter of
    a grid of control points, a rotation in the last two axes, a scale, and (3D) whole
    sections slipping or shifting in y and x.

    Reads:
        every requested array, over a ROI grown to hold every voxel the transformation
        reaches (so that nothing is lost to the deformation); all of one voxel size in
        the spatial axes.

    Provides:
        the same arrays over the requested ROIs, deformed. Interpolatable arrays are
        interpolated linearly and clipped to their input's range; the others take the
        nearest voxel. Graphs are not supported.

    Args:
        control_point_spacing: voxels between control points, per spatial axis.
        jitter_sigma: standard deviation of the control points' jitter, in voxels,
            per spatial axis.
        rotation_interval: (start, end) of the uniformly drawn rotation angle (rad).
        scale_interval: (min, max) of the uniformly drawn scale.
        prob_slip: probability of a section moving alone in y and x (3D only).
        prob_shift: probability of a section and all after it moving (3D only).
        max_misalign: largest such move, in voxels.
        subsample: the transformation is computed on a grid this much coarser and
            interpolated to every voxel.
        spatial_dims: the number of trailing spatial axes (the others are channels).
        p: probability of deforming a batch at all.
    """

    def __init__(
        self,
        control_point_spacing: Sequence[int],
        jitter_sigma: Sequence[float],
        rotation_interval: Sequence[float],
        scale_interval: Sequence[float] = (1.0, 1.0),
        prob_slip: float = 0.0,
        prob_shift: float = 0.0,
        max_misalign: int = 0,
        subsample: int = 1,
        spatial_dims: int = 3,
        p: float = 1.0,
    ) -> None:
        self.control_point_spacing = control_point_spacing
        self.jitter_sigma = jitter_sigma
        self.rotation_start = rotation_interval[0]
        self.rotation_max_amount = rotation_interval[1] - rotation_interval[0]
        self.scale_min = scale_interval[0]
        self.scale_max = scale_interval[1]
        self.prob_slip = prob_slip
        self.prob_shift = prob_shift
        self.max_misalign = max_misalign
        self.subsample = subsample
        self.spatial_dims = spatial_dims
        self.p = p

    def skip_node(self, request: gp.BatchRequest) -> bool:
        return random.random() > self.p

    def prepare(self, request: gp.BatchRequest) -> gp.BatchRequest:
        if request.graph_specs:
            raise InputError("ElasticAugment: graphs are not supported, only arrays")
        voxel_size = self._voxel_size(request)
        total = request.get_total_roi()
        dims = self.spatial_dims
        master = Roi(total.begin[-dims:], total.shape[-dims:])
        master = master.snap_to_grid(voxel_size, mode="grow") / voxel_size
        transformation = self._transformation(master.shape)

        self.transformations: dict[gp.ArrayKey, np.ndarray] = {}
        deps = gp.BatchRequest()
        for key, spec in request.array_specs.items():
            if spec.roi is None:
                continue
            target = Roi(spec.roi.begin[-dims:], spec.roi.shape[-dims:])
            target = target.snap_to_grid(voxel_size, mode="grow") / voxel_size
            crop = np.copy(transformation[(slice(None), *(target - master.begin).to_slices())])
            source = _source_roi(crop)
            for d in range(crop.shape[0]):
                crop[d] -= source.begin[d]
            self.transformations[key] = crop
            source_world = (source + master.begin) * voxel_size
            upstream = spec.copy()
            upstream.roi = Roi(
                spec.roi.begin[:-dims] + source_world.begin,
                spec.roi.shape[:-dims] + source_world.shape,
            )
            deps[key] = upstream
        return deps

    def process(self, batch: gp.Batch, request: gp.BatchRequest) -> None:
        dims = self.spatial_dims
        for key, array in batch.arrays.items():
            if key not in self.transformations:
                continue
            transformation = self.transformations[key]
            shape = array.data.shape
            data = array.data.reshape((-1, *shape[-dims:]))
            if self.spec[key].interpolatable:
                out = interpolate_linear(data, transformation)
                # interpolation stays within the data's range; rounding may not, and
                # IntensityAugment asserts raw within [0, 1]
                if data.size:
                    np.clip(out, data.min(), data.max(), out=out)
            else:
                out = sample_nearest(data, transformation)
            array.data = out.reshape((*shape[:-dims], *out.shape[1:]))
            array.spec.roi = request[key].roi

    def _voxel_size(self, request: gp.BatchRequest) -> Coordinate:
        sizes = {
            Coordinate(self.spec[key].voxel_size[-self.spatial_dims :])
            for key in request.array_specs
            if self.spec[key].voxel_size is not None
        }
        if len(sizes) != 1:
            raise InputError(
                "ElasticAugment: the requested arrays need one common voxel size, "
                f"got {sorted(tuple(s) for s in sizes) or 'none'}"
            )
        return sizes.pop()

    def _transformation(self, shape: Sequence[int]) -> np.ndarray:
        """(D, *shape) source coordinates, in voxels, for every voxel of `shape`.

        The random draws are gp.ElasticAugment's, in its order: scale, jitter (numpy),
        rotation, then one per section for misalignment.
        """
        shape = tuple(shape)
        scale = self.scale_min + random.random() * (self.scale_max - self.scale_min)
        transformation = augment.create_identity_transformation(
            shape, subsample=self.subsample, scale=scale
        )
        if sum(self.jitter_sigma) > 0:
            transformation += augment.create_elastic_transformation(
                shape, self.control_point_spacing, self.jitter_sigma, subsample=self.subsample
            )
        rotation = random.random() * self.rotation_max_amount + self.rotation_start
        if rotation != 0:
            transformation += augment.create_rotation_transformation(
                shape, rotation, subsample=self.subsample
            )
        if self.subsample > 1:
            transformation = upsample_linear(transformation, shape)
        if self.prob_slip + self.prob_shift > 0:
            self._misalign(transformation)
        result: np.ndarray = transformation
        return result

    def _misalign(self, transformation: np.ndarray) -> None:
        """Move sections in y and x, in place: each slips alone with prob_slip, or
        moves with all later sections with prob_shift."""
        if transformation.shape[0] != 3:
            raise InputError("ElasticAugment: section misalignment needs 3D arrays")
        sections = transformation.shape[1]
        shifts = np.zeros((sections, 2), dtype=np.int64)
        for z in range(sections):
            r = random.random()
            if r <= self.prob_slip:
                shifts[z] = self._random_offset()
            elif r <= self.prob_slip + self.prob_shift:
                shifts[z:] += self._random_offset()
        transformation[1] += shifts[:, 0, None, None]
        transformation[2] += shifts[:, 1, None, None]

    def _random_offset(self) -> tuple[int, int]:
        reach = int(self.max_misalign)
        y = self.max_misalign - random.randint(0, 2 * reach)
        x = self.max_misalign - random.randint(0, 2 * reach)
        return y, x


def _source_roi(transformation: np.ndarray) -> Roi:
    """The voxels `transformation` reads: its bounding box, grown to whole voxels."""
    low = Coordinate(math.floor(transformation[d].min()) for d in range(len(transformation)))
    high = Coordinate(math.ceil(transformation[d].max()) + 1 for d in range(len(transformation)))
    return Roi(low, high - low)


def sample_nearest(data: np.ndarray, transformation: np.ndarray) -> np.ndarray:
    """`data` (C, *spatial) sampled at the voxels nearest to `transformation` (D, *out).

    Rounds as scipy's order-0 map_coordinates does, floor(x + 0.5) (truncation equals
    floor here: the source ROI was grown to hold every transformed coordinate, so they
    are not below -0.5, and the clip only guards rounding at the far end).
    """
    spatial = data.shape[1:]
    out_shape = transformation.shape[1:]
    flat_data = data.reshape(data.shape[0], -1)
    out = np.empty((data.shape[0], *out_shape), dtype=data.dtype)
    # in slabs whose temporaries stay in the CPU cache, as in interpolate_linear
    rows = max(1, _SLAB_VOXELS // max(1, int(np.prod(out_shape[1:]))))
    for start in range(0, out_shape[0], rows):
        slab = transformation[:, start : start + rows]
        flat = np.zeros(slab.shape[1:], dtype=np.intp)
        shifted = np.empty(slab.shape[1:], dtype=slab.dtype)
        for d, n in enumerate(spatial):
            np.add(slab[d], 0.5, out=shifted)
            index = shifted.astype(np.intp)
            np.clip(index, 0, n - 1, out=index)
            flat *= n
            flat += index
        out[:, start : start + rows] = np.take(flat_data, flat, axis=1)
    return out


def upsample_linear(transformation: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(D, *coarse) to (D, *shape) by separable linear interpolation, corners aligned.

    Equal to what `scipy.ndimage.zoom(order=1)` gives per component (within float32
    rounding): output index i samples the coarse grid at i * (n_in - 1) / (n_out - 1).
    Each axis is one matrix product with a two-band interpolation matrix, the last
    (finest-strided) axis first so that only the final product writes the full size.
    """
    out = np.ascontiguousarray(transformation, dtype=np.float32)
    for axis in range(len(shape), 0, -1):
        n_in, n_out = out.shape[axis], shape[axis - 1]
        if n_in == n_out:
            continue
        weights = _interpolation_matrix(n_in, n_out)
        if axis == out.ndim - 1:
            out = out @ weights.T
        else:
            lead = out.shape[:axis]
            rest = out.shape[axis + 1 :]
            out = weights @ out.reshape((-1, n_in, int(np.prod(rest))))
            out = out.reshape((*lead, n_out, *rest))
    return out


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32: linear interpolation with aligned corners."""
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    if n_in == 1:
        weights[:, 0] = 1.0
        return weights
    position = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
    low = np.minimum(position.astype(np.intp), n_in - 2)
    fraction = position - low
    rows = np.arange(n_out)
    weights[rows, low] = 1.0 - fraction
    weights[rows, low + 1] = fraction
    return weights


def interpolate_linear(data: np.ndarray, transformation: np.ndarray) -> np.ndarray:
    """`data` (C, *spatial) linearly interpolated at `transformation` (D, *out).

    scipy's order-1 map_coordinates, restricted to what the elastic augmentation
    produces (every coordinate inside the data) and faster: an axis whose coordinates
    are all whole voxels (z of serial sections, which are never jittered or rotated
    out of plane) is indexed directly, so anisotropic volumes interpolate in 2D. The
    output is made in slabs along its first axis whose temporaries stay in the CPU
    cache (the dozen full-size temporaries of one pass over a CREMI input, 9.5 million
    voxels, took twice as long); every voxel is computed as in one pass.
    """
    spatial = data.shape[1:]
    out_shape = transformation.shape[1:]
    # Whether an axis is whole is decided over the whole output, so that every slab
    # takes the same path.
    whole = [n == 1 or _is_whole(transformation[d]) for d, n in enumerate(spatial)]
    flat_data = data.reshape(data.shape[0], -1)
    out = np.empty((data.shape[0], *out_shape), dtype=data.dtype)
    rows = max(1, _SLAB_VOXELS // max(1, int(np.prod(out_shape[1:]))))
    for start in range(0, out_shape[0], rows):
        slab = slice(start, start + rows)
        out[:, slab] = _interpolate(flat_data, spatial, transformation[:, slab], whole)
    return out


# Output voxels interpolated at once: their ~15 temporaries (4 to 8 bytes each) stay
# within a typical L2 cache.
_SLAB_VOXELS = 1 << 15


def _is_whole(coordinate: np.ndarray) -> bool:
    """Whether every coordinate is within `_WHOLE_VOXEL` of a whole voxel."""
    step = max(1, _SLAB_VOXELS // max(1, int(np.prod(coordinate.shape[1:]))))
    for start in range(0, coordinate.shape[0], step):
        part = coordinate[start : start + step]
        if np.abs(part - np.rint(part)).max() > _WHOLE_VOXEL:
            return False
    return True


def _interpolate(
    flat_data: np.ndarray,
    spatial: tuple[int, ...],
    transformation: np.ndarray,
    whole: Sequence[bool],
) -> np.ndarray:
    """`interpolate_linear` of the (C, prod(spatial)) data at `transformation`, with
    the axes marked `whole` indexed directly."""
    strides = np.cumprod((1, *spatial[:0:-1]))[::-1]
    base = np.zeros(transformation.shape[1:], dtype=np.intp)
    fractional: list[tuple[int, np.ndarray]] = []
    for d, n in enumerate(spatial):
        coordinate = transformation[d]
        if whole[d]:
            index = np.rint(coordinate).astype(np.intp)
            np.clip(index, 0, n - 1, out=index)
        else:
            low = np.floor(coordinate)
            np.clip(low, 0, n - 2, out=low)
            # exact in float32: both are close, or low is 0
            weight = coordinate - low
            np.clip(weight, 0.0, 1.0, out=weight)
            fractional.append((int(strides[d]), weight.astype(np.float32, copy=False)))
            index = low.astype(np.intp)
        if strides[d] != 1:
            index *= strides[d]
        base += index
    # the values at the 2**F corners (last fractional axis fastest), then one linear
    # interpolation per fractional axis, last first, each halving the corners
    corners = [
        np.take(
            flat_data, base + sum(c * stride for c, (stride, _) in zip(corner, fractional)), axis=1
        )
        for corner in np.ndindex(*(2,) * len(fractional))
    ]
    for _, weight in reversed(fractional):
        corners = [low + weight * (high - low) for low, high in zip(corners[::2], corners[1::2])]
    result: np.ndarray = corners[0]
    return result
