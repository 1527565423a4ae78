"""Project volumes: zarr containers with `raw`, `labels` and `labels_mask` arrays.

Arrays carry voxel size and offset (nm) as funlib.persistence metadata, and also the
`resolution` attribute that older gunpowder sources read; their container group carries
OME-NGFF 0.4 multiscales for them (engine.data.ome), so napari and neuroglancer show
them to scale. Read them through `open_array` (funlib.persistence), never through
gunpowder's ZarrSource.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import ome

RAW = "raw"
LABELS = "labels"
MASK = "labels_mask"


def axis_names(dims: int) -> list[str]:
    return ["z", "y", "x"][-dims:]


def default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """Chunks of a few MB: whole sections in 2D, 32-section slabs of 256² tiles in 3D."""
    if len(shape) == 2:
        return tuple(min(s, 512) for s in shape)
    return (min(shape[0], 32), *(min(s, 256) for s in shape[1:]))


def create_array(
    container: Path,
    name: str,
    shape: Sequence[int],
    dtype: Any,
    voxel_size: Sequence[int],
    offset: Sequence[int],
    chunks: Sequence[int] | None = None,
    mode: str = "w",
) -> Any:
    """Create `container/name` with funlib metadata; returns the zarr array to write into.

    Written with zarr alone, in the layout funlib.persistence's `prepare_ds` writes and
    `open_ds` reads (voxel_size, offset, axis_names, units, types; plus the `resolution`
    older gunpowder sources read): importing funlib costs a blockwise run 1.5 s at
    start. Offsets must be multiples of the voxel size, as funlib requires. The array
    also gets its OME-NGFF 0.4 multiscales entry on the container group (engine.data.ome)
    and, for neuroglancer opening the array alone, `_ARRAY_DIMENSIONS` and
    `dimension_units`.
    """
    import zarr

    dims = len(voxel_size)
    if any(o % v for o, v in zip(offset, voxel_size)):
        raise ValueError(
            f"offset {list(offset)} is not a multiple of voxel size {list(voxel_size)}"
        )
    zarr.open_group(str(container), mode="a")
    names = _names(len(shape), dims) or [
        *(f"c{i}^" for i in range(len(shape) - dims)),
        *(f"d{i}" for i in range(dims)),
    ]
    array = zarr.open_array(
        str(container / name),
        mode=mode,
        shape=tuple(shape),
        chunks=tuple(chunks or default_chunks(shape)),
        dtype=dtype,
        dimension_separator="/",
    )
    array.attrs.put(
        {
            "axis_names": names,
            "offset": [int(o) for o in offset],
            "resolution": [int(v) for v in voxel_size],
            "types": ["channel" if n.endswith("^") else "space" for n in names],
            "units": ["nm"] * dims,
            "voxel_size": [int(v) for v in voxel_size],
            "_ARRAY_DIMENSIONS": names,
            "dimension_units": [
                *([None] * (len(shape) - dims)),
                *(f"{int(v)} nm" for v in voxel_size),
            ],
        }
    )
    if len(shape) - dims in (0, 1) and dims in (2, 3):
        ome.add(container, name, len(shape), voxel_size, offset)
    return array


def _names(ndim: int, dims: int) -> list[str] | None:
    if ndim == dims:
        return axis_names(dims)
    if ndim == dims + 1:  # channels first: predictions
        return ["c^", *axis_names(dims)]
    return None


def read_window(
    array: Any,
    voxel_size: Sequence[int],
    offset: Sequence[int],
    start: Sequence[int],
    shape: Sequence[int],
    fill: int = 0,
) -> np.ndarray:
    """Voxels `start` .. `start + shape` (world units, nm) of a zarr array, padded with `fill`.

    Straight from zarr: funlib's Array goes through dask, which costs time per block and
    must not run in forked workers. Channel axes (leading) are read whole.
    """
    dims = len(voxel_size)
    channels = tuple(array.shape[: array.ndim - dims])
    begin = [(s - o) // v for s, o, v in zip(start, offset, voxel_size)]
    size = [sh // v for sh, v in zip(shape, voxel_size)]
    extent = array.shape[array.ndim - dims :]
    lo = [max(b, 0) for b in begin]
    hi = [min(b + n, e) for b, n, e in zip(begin, size, extent)]
    out = np.full((*channels, *size), fill, dtype=array.dtype)
    if all(h > low for low, h in zip(lo, hi)):
        source = tuple(slice(low, h) for low, h in zip(lo, hi))
        target: tuple[Any, ...] = (
            Ellipsis,
            *(slice(low - b, h - b) for low, h, b in zip(lo, hi, begin)),
        )
        out[target] = array[(..., *source)]
    return out


def write_window(
    array: Any,
    voxel_size: Sequence[int],
    offset: Sequence[int],
    start: Sequence[int],
    data: np.ndarray,
) -> None:
    """Write `data` (voxels, channels first) at world `start`, cropped to the array."""
    dims = len(voxel_size)
    begin = [(s - o) // v for s, o, v in zip(start, offset, voxel_size)]
    size = data.shape[data.ndim - dims :]
    extent = array.shape[array.ndim - dims :]
    lo = [max(b, 0) for b in begin]
    hi = [min(b + n, e) for b, n, e in zip(begin, size, extent)]
    if any(h <= low for low, h in zip(lo, hi)):
        return
    target = tuple(slice(low, h) for low, h in zip(lo, hi))
    source: tuple[Any, ...] = (
        Ellipsis,
        *(slice(low - b, h - b) for low, h, b in zip(lo, hi, begin)),
    )
    array[(..., *target)] = data[source]


def open_array(container: Path, name: str, mode: str = "r") -> Any:
    """A funlib.persistence Array (voxel size, offset, ROI) of `container/name`."""
    from funlib.persistence import open_ds

    return open_ds(str(container / name), mode=mode)


def array_names(container: Path) -> list[str]:
    return sorted(p.name for p in container.iterdir() if (p / ".zarray").exists())


def iter_blocks(shape: Sequence[int], block: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Slices that tile `shape` in blocks of `block` (the last ones may be smaller)."""
    grids = [range(0, s, b) for s, b in zip(shape, block)]
    for starts in np.ndindex(*[len(g) for g in grids]):
        yield tuple(
            slice(g[i], min(g[i] + b, s)) for g, i, b, s in zip(grids, starts, block, shape)
        )


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A hidden folder beside `target` that replaces it only if the block succeeds.

    Any failure, Ctrl-C included, removes the folder: a volume is either complete or
    absent, never half-written.
    """
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_group_attrs(container: Path, attrs: Mapping[str, Any]) -> None:
    """Add `attrs` to the attributes of the zarr group `container` (created if absent)."""
    import zarr

    zarr.open_group(str(container), mode="a").attrs.update(dict(attrs))


def write_volume(
    target: Path,
    raw: np.ndarray,
    labels: np.ndarray | None,
    voxel_size: Sequence[int],
    offset: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write in-memory arrays as a project volume (atomically, see `staged`).

    `attrs` go to the volume's group attributes (e.g. its provenance).
    """
    offset = offset or [0] * len(voxel_size)
    with staged(target) as tmp:
        if attrs:
            write_group_attrs(tmp, attrs)
        create_array(tmp, RAW, raw.shape, np.uint8, voxel_size, offset)[:] = raw
        if labels is not None:
            create_array(tmp, LABELS, labels.shape, np.uint64, voxel_size, offset)[:] = labels
            out_mask = create_array(tmp, MASK, labels.shape, np.uint8, voxel_size, offset)
            out_mask[:] = 1 if mask is None else (mask > 0).astype(np.uint8)
