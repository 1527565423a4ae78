"""`lsdctl data import`: copy raw, labels and mask from any supported file into a project.

Everything that can be checked before writing is checked first (keys, shapes, dtypes,
voxel size, offset). The copy then goes block by block (never the whole volume in
memory) into a hidden `.NAME.zarr.partial-PID` folder that is renamed into place at the
end; any failure, including one found while copying (NaN in raw, negative labels) or
Ctrl-C, removes it, so a volume is either fully imported or not there at all.
The volume's group attributes record where it came from (`engine.data.provenance`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import provenance, volume
from engine.data.sources import Source, open_source
from engine.errors import InputError
from engine.project import LABELLED_SPLITS, SPLIT_NAMES, Project, check_name

Progress = Callable[[int, int], None]

# Voxels read per block: bounds memory (uint64 labels: 8 bytes a voxel) on any shape.
_BLOCK_VOXELS = 16 * 1024 * 1024


@dataclass
class ImportRequest:
    """Everything `lsdctl data import` was asked to do."""

    source: Path
    split: str = "train"
    name: str | None = None
    labels: Path | None = None
    raw_key: str | None = None
    labels_key: str | None = None
    mask: Path | None = None
    mask_key: str | None = None
    voxel_size: Sequence[int] | None = None
    offset: Sequence[int] | None = None
    crop: Sequence[tuple[int | None, int | None]] | None = None
    overwrite: bool = False


@dataclass
class ImportReport:
    path: Path
    shape: tuple[int, ...]
    voxel_size: tuple[int, ...]
    offset: tuple[int, ...]
    raw_dtype: str
    arrays: list[str]
    raw_scaled_from: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)


def parse_crop(text: str) -> list[tuple[int | None, int | None]]:
    """`0:35,:,10:` → per-axis (start, stop) in voxels of the source."""
    axes: list[tuple[int | None, int | None]] = []
    for part in text.split(","):
        part = part.strip()
        if ":" not in part:
            raise InputError(f"invalid --crop {text!r}: give start:stop per axis, e.g. 0:35,:,:")
        start, stop = part.split(":", 1)
        try:
            axes.append((int(start) if start else None, int(stop) if stop else None))
        except ValueError:
            raise InputError(f"invalid --crop {text!r}: bounds must be whole voxels") from None
    return axes


def import_volume(
    project: Project, request: ImportRequest, progress: Progress | None = None
) -> ImportReport:
    config = project.load_config()
    dims = config.data.dims
    name = check_name(request.name or _stem(request.source), what="volume name")
    target = project.split_dir(request.split) / f"{name}.zarr"
    if target.exists() and not request.overwrite:
        raise InputError(
            f"volume {request.split}/{name}.zarr already exists in {project.name}: "
            "pass --name to import under another name, or --overwrite to replace it"
        )
    sources: list[Source] = []
    try:
        raw = open_source(request.source, request.raw_key, "raw")
        sources.append(raw)
        labels = _open_labels(request, raw)
        if labels is not None:
            sources.append(labels)
        mask = open_source(request.mask, request.mask_key, "mask") if request.mask else None
        if mask is not None:
            sources.append(mask)
        plan = _plan(request, config.data.voxel_size, dims, raw, labels, mask)
        if request.split in LABELLED_SPLITS and labels is None:
            raise InputError(
                f"no labels found for {SPLIT_NAMES[request.split]} volume {name}: pass "
                "--labels FILE and/or --labels-key K, or import it with --split test"
            )
        origin = provenance.Imported(
            raw=_source_array(raw),
            labels=_source_array(labels) if labels is not None else None,
            mask=_source_array(mask) if mask is not None else None,
            source_start=[s.start for s in plan.slices],
            source_stop=[s.stop for s in plan.slices],
            roi=provenance.world_roi(plan.offset, plan.shape, plan.voxel_size),
            voxel_size=list(plan.voxel_size),
        )
        return _copy(project, target, plan, raw, labels, mask, origin, progress)
    finally:
        for source in sources:
            source.close()


def _stem(path: Path) -> str:
    stem = path.name
    for suffix in (*(".lzf.h5", ".h5", ".hdf", ".hdf5", ".he5", ".tif", ".tiff", ".zarr", ".n5"),):
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return path.stem


def _source_array(source: Source) -> provenance.SourceArray:
    # Absolute and with links resolved: two imports of one file match however it was named.
    return provenance.SourceArray(path=str(source.path.resolve()), key=source.key)


def _open_labels(request: ImportRequest, raw: Source) -> Source | None:
    if request.labels is not None:
        return open_source(request.labels, request.labels_key, "labels")
    if request.labels_key is not None:
        return open_source(request.source, request.labels_key, "labels")
    # Labels in the raw file itself (CREMI-style containers): only under a labels key.
    if raw.key is None:
        return None
    try:
        found = open_source(request.source, None, "labels")
    except InputError:
        return None
    if found.key == raw.key:
        found.close()
        return None
    return found


@dataclass
class _Plan:
    shape: tuple[int, ...]  # of the imported volume, after promotion and crop
    slices: tuple[slice, ...]  # into the (promoted) source
    promote: bool  # a 2D image imported into a 3D project as one section
    voxel_size: tuple[int, ...]
    offset: tuple[int, ...]
    notes: list[str]


def _plan(
    request: ImportRequest,
    project_voxel_size: Sequence[int],
    dims: int,
    raw: Source,
    labels: Source | None,
    mask: Source | None,
) -> _Plan:
    notes: list[str] = []
    for source in (raw, labels, mask):
        if source is None:
            continue
        if len(source.shape) not in (2, 3):
            raise InputError(
                f"{source.label} has shape {list(source.shape)}: lsdctl imports 2D images "
                "and 3D volumes (z, y, x) of one channel"
            )
        if len(source.shape) > dims:
            raise InputError(
                f"{source.label} is 3D but project is 2D (data.dims = 2): import into a 3D "
                "project, or import sections as separate 2D volumes"
            )
    for other, role in ((labels, "labels"), (mask, "mask")):
        if other is not None and other.shape != raw.shape:
            raise InputError(
                f"raw {raw.label} has shape {list(raw.shape)} but {role} {other.label} has "
                f"{list(other.shape)}: they must cover the same voxels"
            )
    if labels is not None and labels.dtype.kind not in "iub":
        raise InputError(
            f"labels {labels.label} are {labels.dtype}, not integers: pass the dataset of "
            "neuron ids (--labels-key)"
        )
    if raw.dtype.kind not in "iufb":
        raise InputError(f"raw {raw.label} has unsupported type {raw.dtype}")
    promote = len(raw.shape) < dims
    shape = (1, *raw.shape) if promote else raw.shape

    voxel_size = _voxel_size(request, raw, labels, project_voxel_size, dims, notes)
    slices = _crop_slices(request.crop, shape)
    cropped = tuple(s.stop - s.start for s in slices)
    if request.offset is not None:
        offset = tuple(int(o) for o in request.offset)
        if len(offset) != dims:
            raise InputError(f"--offset needs {dims} values (z,y,x in nm), got {list(offset)}")
    else:
        stored = raw.offset or (labels.offset if labels is not None else None)
        offset = stored if stored is not None and len(stored) == dims else (0,) * dims
    if any(o % v for o, v in zip(offset, voxel_size)):
        raise InputError(
            f"offset {list(offset)} nm is not a multiple of the voxel size {list(voxel_size)}"
        )
    # A crop keeps world coordinates: the volume starts where its first voxel was.
    offset = tuple(o + s.start * v for o, s, v in zip(offset, slices, voxel_size))
    return _Plan(cropped, slices, promote, voxel_size, offset, notes)


def _voxel_size(
    request: ImportRequest,
    raw: Source,
    labels: Source | None,
    project_voxel_size: Sequence[int],
    dims: int,
    notes: list[str],
) -> tuple[int, ...]:
    if request.voxel_size is not None:
        voxel_size = tuple(request.voxel_size)
        if len(voxel_size) != dims:
            raise InputError(
                f"--voxel-size needs {dims} values ({'z,y,x' if dims == 3 else 'y,x'} in nm), "
                f"got {list(voxel_size)}"
            )
    else:
        stored = raw.voxel_size or (labels.voxel_size if labels is not None else None)
        if stored is not None and len(stored) == dims:
            voxel_size = stored
            notes.append(f"voxel size {list(stored)} nm read from the file")
        else:
            voxel_size = tuple(project_voxel_size)
            notes.append(
                f"no voxel size in the file: using the project's {list(voxel_size)} nm "
                "(pass --voxel-size to set it)"
            )
    if any(v <= 0 for v in voxel_size):
        raise InputError(f"--voxel-size {list(voxel_size)} must be positive whole nm")
    if list(voxel_size) != list(project_voxel_size):
        notes.append(
            f"voxel size {list(voxel_size)} nm differs from the project's data.voxel_size "
            f"{list(project_voxel_size)}: training needs them equal (lsdctl config set)"
        )
    return tuple(int(v) for v in voxel_size)


def _crop_slices(
    crop: Sequence[tuple[int | None, int | None]] | None, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    if crop is None:
        return tuple(slice(0, s) for s in shape)
    if len(crop) != len(shape):
        raise InputError(f"--crop needs {len(shape)} axes for shape {list(shape)}, got {len(crop)}")
    slices = []
    for (start, stop), size in zip(crop, shape):
        lo, hi, _ = slice(start, stop).indices(size)
        if hi <= lo:
            raise InputError(f"--crop {start}:{stop} leaves nothing of an axis of size {size}")
        slices.append(slice(lo, hi))
    return tuple(slices)


def _read(source: Source, plan: _Plan, block: tuple[slice, ...]) -> np.ndarray:
    """The block (in imported coordinates) of a source, promoted and cropped."""
    src = tuple(slice(c.start + b.start, c.start + b.stop) for c, b in zip(plan.slices, block))
    if plan.promote:
        return np.asarray(source.array[src[1:]])[np.newaxis]
    return np.asarray(source.array[src])


def _block_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    chunks = volume.default_chunks(shape)
    # Whole chunks, as many along y/x as fit the voxel budget: aligned writes, bounded reads.
    per_chunk = int(np.prod(chunks))
    scale = max(1, int((_BLOCK_VOXELS / per_chunk) ** (1 / (len(shape) - 1))))
    return (chunks[0], *(c * scale for c in chunks[1:]))


def _raw_range(
    raw: Source, plan: _Plan, progress: Progress | None, total: int
) -> tuple[float, float]:
    """Min and max of a non-uint8 raw volume (a first pass); NaN is an error."""
    low, high = np.inf, -np.inf
    done = 0
    for block in volume.iter_blocks(plan.shape, _block_shape(plan.shape)):
        data = _read(raw, plan, block)
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            raise InputError(
                f"raw {raw.label} contains NaN or infinite values: fill or crop them before import"
            )
        low, high = min(low, float(data.min())), max(high, float(data.max()))
        done += data.size
        if progress:
            progress(done, total)
    return low, high


def _copy(
    project: Project,
    target: Path,
    plan: _Plan,
    raw: Source,
    labels: Source | None,
    mask: Source | None,
    origin: provenance.Imported,
    progress: Progress | None,
) -> ImportReport:
    shape = plan.shape
    voxels = int(np.prod(shape))
    passes = 1 if raw.dtype == np.uint8 else 2
    total = voxels * passes
    scale_from = None
    if raw.dtype != np.uint8:
        scale_from = _raw_range(raw, plan, progress, total)
    with volume.staged(target) as tmp:
        volume.write_group_attrs(tmp, provenance.to_attrs(origin))
        out_raw = volume.create_array(
            tmp, volume.RAW, shape, np.uint8, plan.voxel_size, plan.offset
        )
        out_labels = out_mask = None
        if labels is not None:
            out_labels = volume.create_array(
                tmp, volume.LABELS, shape, np.uint64, plan.voxel_size, plan.offset
            )
            out_mask = volume.create_array(
                tmp, volume.MASK, shape, np.uint8, plan.voxel_size, plan.offset
            )
        done = voxels * (passes - 1)
        for block in volume.iter_blocks(shape, _block_shape(shape)):
            out_raw[block] = _to_uint8(_read(raw, plan, block), scale_from)
            if labels is not None and out_labels is not None and out_mask is not None:
                ids = _read(labels, plan, block)
                if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
                    raise InputError(
                        f"labels {labels.label} contain negative ids: neuron ids must be >= 0"
                    )
                out_labels[block] = ids.astype(np.uint64)
                if mask is not None:
                    out_mask[block] = (_read(mask, plan, block) > 0).astype(np.uint8)
                else:
                    # Without a mask every voxel counts as labelled; 0 is boundary.
                    out_mask[block] = 1
            done += int(np.prod([s.stop - s.start for s in block]))
            if progress:
                progress(done, total)
    arrays = [volume.RAW] + ([volume.LABELS, volume.MASK] if labels is not None else [])
    return ImportReport(
        path=target,
        shape=shape,
        voxel_size=plan.voxel_size,
        offset=plan.offset,
        raw_dtype=str(raw.dtype),
        arrays=arrays,
        raw_scaled_from=scale_from,
        notes=plan.notes,
    )


def _to_uint8(data: np.ndarray, scale_from: tuple[float, float] | None) -> np.ndarray[Any, Any]:
    if scale_from is None:
        return data
    low, high = scale_from
    if high <= low:
        return np.zeros(data.shape, np.uint8)
    scaled = (data.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
