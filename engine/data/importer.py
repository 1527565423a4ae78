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
from engine.project.layout import LABELLED_SPLITS, SPLIT_NAMES, Project, check_name

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
    # The labels' (and mask's) own region when labelled: raw's, or a part of it.
    labels_shape: tuple[int, ...] | None = None
    labels_offset: tuple[int, ...] | None = None


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
        mask = _open_mask(request, raw, labels)
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
            source_start=[s.start for s in plan.raw.slices],
            source_stop=[s.stop for s in plan.raw.slices],
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


# Mask datasets taken from the raw file without being asked for (the paper's padded
# CREMI samples carry `volumes/labels/mask`); a bare "mask" could be anything.
_IMPLIED_MASK_KEYS = ("volumes/labels/mask", "volumes/labels/labels_mask", "labels_mask")


def _open_mask(request: ImportRequest, raw: Source, labels: Source | None) -> Source | None:
    if request.mask is not None:
        return open_source(request.mask, request.mask_key, "mask")
    if request.mask_key is not None:
        # In the labels' file if they came from one, else in the raw file.
        return open_source(request.labels or request.source, request.mask_key, "mask")
    if labels is None or raw.key is None or request.labels is not None:
        return None
    for key in _IMPLIED_MASK_KEYS:
        try:
            return open_source(request.source, key, "mask")
        except InputError:
            continue
    return None


@dataclass
class _Region:
    """Where one imported array comes from and where it lies: `slices` into its
    (promoted) source, `offset` in nm of its first voxel in the world."""

    slices: tuple[slice, ...]
    offset: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.slices)


@dataclass
class _Plan:
    raw: _Region  # raw's region, after promotion and crop
    labels: _Region | None  # labels' (and the mask's) own region inside raw's
    mask: _Region | None  # the mask's slices over the labels' region
    promote: bool  # a 2D image imported into a 3D project as one section
    voxel_size: tuple[int, ...]
    notes: list[str]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.raw.shape

    @property
    def offset(self) -> tuple[int, ...]:
        return self.raw.offset


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
    if labels is not None and labels.dtype.kind not in "iub":
        raise InputError(
            f"labels {labels.label} are {labels.dtype}, not integers: pass the dataset of "
            "neuron ids (--labels-key)"
        )
    if raw.dtype.kind not in "iufb":
        raise InputError(f"raw {raw.label} has unsupported type {raw.dtype}")
    promote = len(raw.shape) < dims
    for other, role in ((labels, "labels"), (mask, "mask")):
        if other is not None and len(other.shape) != len(raw.shape):
            raise InputError(
                f"raw {raw.label} is {len(raw.shape)}D but {role} {other.label} is "
                f"{len(other.shape)}D: they must have the same axes"
            )

    voxel_size = _voxel_size(request, raw, labels, project_voxel_size, dims, notes)
    shape = _promoted(raw.shape, promote)
    stored = _stored_offset(raw, dims)
    if stored is None and labels is not None and labels.shape == raw.shape:
        stored = _stored_offset(labels, dims)
    stored = stored or (0,) * dims
    if request.offset is not None:
        offset = tuple(int(o) for o in request.offset)
        if len(offset) != dims:
            raise InputError(f"--offset needs {dims} values (z,y,x in nm), got {list(offset)}")
    else:
        offset = stored
    if any(o % v for o, v in zip(offset, voxel_size)):
        raise InputError(
            f"offset {list(offset)} nm is not a multiple of the voxel size {list(voxel_size)}"
        )
    # --offset moves the whole volume: labels keep their place relative to raw.
    shift = tuple(o - s for o, s in zip(offset, stored))
    whole = _Region(tuple(slice(0, s) for s in shape), offset)
    slices = _crop_slices(request.crop, shape)
    # A crop keeps world coordinates: the volume starts where its first voxel was.
    raw_region = _Region(
        slices, tuple(o + s.start * v for o, s, v in zip(offset, slices, voxel_size))
    )

    labels_region = mask_region = None
    if labels is not None:
        placed = _place(labels, "labels", raw, whole, stored, shift, voxel_size, promote, dims)
        labels_region = _inside(placed, whole, raw_region, labels, raw, voxel_size)
        if labels_region.shape != raw_region.shape or labels_region.offset != raw_region.offset:
            notes.append(
                f"labels cover {list(labels_region.shape)} voxels at offset "
                f"{list(labels_region.offset)} nm, inside raw's {list(raw_region.shape)} at "
                f"{list(raw_region.offset)} nm: training samples only where labels are, with "
                "raw context from around them"
            )
        if mask is not None:
            mask_placed = _place(
                mask, "mask", raw, whole, stored, shift, voxel_size, promote, dims, placed
            )
            mask_region = _covering(mask_placed, labels_region, mask, voxel_size)
    elif mask is not None:
        raise InputError(f"mask {mask.label} given without labels: pass --labels too")
    return _Plan(raw_region, labels_region, mask_region, promote, voxel_size, notes)


def _promoted(shape: tuple[int, ...], promote: bool) -> tuple[int, ...]:
    return (1, *shape) if promote else shape


def _stored_offset(source: Source, dims: int) -> tuple[int, ...] | None:
    stored = source.offset
    return stored if stored is not None and len(stored) == dims else None


def _place(
    source: Source,
    role: str,
    raw: Source,
    raw_whole: _Region,
    raw_stored: tuple[int, ...],
    shift: tuple[int, ...],
    voxel_size: tuple[int, ...],
    promote: bool,
    dims: int,
    labels_whole: _Region | None = None,
) -> _Region:
    """Where the whole of `source` (labels or mask) lies in the world.

    Its own `offset` attribute (nm, in raw's frame, moved with raw by --offset) says
    where; without one it must have raw's shape (or, for a mask, the labels'), and
    lies there. A CREMI padded sample's labels carry such an offset.
    """
    shape = _promoted(source.shape, promote)
    stored = _stored_offset(source, dims)
    if stored is None:
        if labels_whole is not None and shape == labels_whole.shape:
            return labels_whole
        if source.shape == raw.shape:
            return raw_whole
        raise InputError(
            f"raw {raw.label} has shape {list(raw.shape)} but {role} {source.label} has "
            f"{list(source.shape)} and no offset attribute saying where it lies: they must "
            "cover the same voxels, or the smaller one must carry its offset in nm (as "
            "CREMI's padded samples do)"
        )
    offset = tuple(s + d for s, d in zip(stored, shift))
    if source.shape == raw.shape and stored == raw_stored:
        return raw_whole
    misaligned = [o for o, v in zip(offset, voxel_size) if o % v]
    if misaligned:
        raise InputError(
            f"{role} {source.label} lies at offset {list(stored)} nm, which is not on raw's "
            f"voxel grid ({list(voxel_size)} nm): realign it to whole voxels first"
        )
    return _Region(tuple(slice(0, s) for s in shape), offset)


def _roi(region: _Region, voxel_size: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(begin, end) in nm."""
    end = tuple(o + n * v for o, n, v in zip(region.offset, region.shape, voxel_size))
    return region.offset, end


def _inside(
    labels: _Region,
    raw_whole: _Region,
    raw_region: _Region,
    source: Source,
    raw: Source,
    voxel_size: tuple[int, ...],
) -> _Region:
    """The part of the labels' region inside the imported (maybe cropped) raw, refusing
    labels that reach beyond the raw data (a sample needs raw at every labelled voxel)."""
    begin, end = _roi(labels, voxel_size)
    raw_begin, raw_end = _roi(raw_whole, voxel_size)
    if any(b < rb for b, rb in zip(begin, raw_begin)) or any(e > re for e, re in zip(end, raw_end)):
        raise InputError(
            f"labels {source.label} span [{list(begin)}, {list(end)}) nm, beyond raw "
            f"{raw.label} [{list(raw_begin)}, {list(raw_end)}) nm: the labels must lie inside "
            "raw (check the offset attributes, or pass --offset)"
        )
    crop_begin, crop_end = _roi(raw_region, voxel_size)
    low = tuple(max(b, c) for b, c in zip(begin, crop_begin))
    high = tuple(min(e, c) for e, c in zip(end, crop_end))
    if any(h <= lo for lo, h in zip(low, high)):
        raise InputError(
            f"--crop leaves none of the labels of {source.label} (they span "
            f"[{list(begin)}, {list(end)}) nm): crop where the labels are"
        )
    slices = tuple(
        slice(s.start + (lo - b) // v, s.start + (h - b) // v)
        for s, lo, h, b, v in zip(labels.slices, low, high, begin, voxel_size)
    )
    return _Region(slices, low)


def _covering(
    mask: _Region, labels: _Region, source: Source, voxel_size: tuple[int, ...]
) -> _Region:
    """The mask's slices over the labels' region: it must cover all of the labels."""
    begin, end = _roi(mask, voxel_size)
    want_begin, want_end = _roi(labels, voxel_size)
    if any(b > w for b, w in zip(begin, want_begin)) or any(e < w for e, w in zip(end, want_end)):
        raise InputError(
            f"mask {source.label} spans [{list(begin)}, {list(end)}) nm but the labels "
            f"[{list(want_begin)}, {list(want_end)}) nm: the mask must cover the labels"
        )
    slices = tuple(
        slice(s.start + (w - b) // v, s.start + (w - b) // v + n)
        for s, w, b, v, n in zip(mask.slices, want_begin, begin, voxel_size, labels.shape)
    )
    return _Region(slices, labels.offset)


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


def _read(source: Source, region: _Region, promote: bool, block: tuple[slice, ...]) -> np.ndarray:
    """The block (in the region's voxels) of a source, promoted and cropped."""
    src = tuple(slice(c.start + b.start, c.start + b.stop) for c, b in zip(region.slices, block))
    if promote:
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
        data = _read(raw, plan.raw, plan.promote, block)
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
    labelled = int(np.prod(plan.labels.shape)) if plan.labels is not None else 0
    passes = 1 if raw.dtype == np.uint8 else 2
    total = voxels * passes + labelled
    scale_from = None
    if raw.dtype != np.uint8:
        scale_from = _raw_range(raw, plan, progress, total)
    done = voxels * (passes - 1)
    with volume.staged(target) as tmp:
        volume.write_group_attrs(tmp, provenance.to_attrs(origin))
        out_raw = volume.create_array(
            tmp, volume.RAW, shape, np.uint8, plan.voxel_size, plan.offset
        )
        for block in volume.iter_blocks(shape, _block_shape(shape)):
            out_raw[block] = _to_uint8(_read(raw, plan.raw, plan.promote, block), scale_from)
            done += int(np.prod([s.stop - s.start for s in block]))
            if progress:
                progress(done, total)
        if labels is not None and plan.labels is not None:
            _copy_labels(tmp, plan, plan.labels, labels, mask, done, total, progress)
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
        labels_shape=plan.labels.shape if plan.labels is not None else None,
        labels_offset=plan.labels.offset if plan.labels is not None else None,
    )


def _copy_labels(
    tmp: Path,
    plan: _Plan,
    region: _Region,
    labels: Source,
    mask: Source | None,
    done: int,
    total: int,
    progress: Progress | None,
) -> None:
    """Labels and mask over the labels' own region (raw's, or a part of it)."""
    shape = region.shape
    out_labels = volume.create_array(
        tmp, volume.LABELS, shape, np.uint64, plan.voxel_size, region.offset
    )
    out_mask = volume.create_array(
        tmp, volume.MASK, shape, np.uint8, plan.voxel_size, region.offset
    )
    for block in volume.iter_blocks(shape, _block_shape(shape)):
        ids = _read(labels, region, plan.promote, block)
        if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
            raise InputError(f"labels {labels.label} contain negative ids: neuron ids must be >= 0")
        out_labels[block] = ids.astype(np.uint64)
        if mask is not None and plan.mask is not None:
            out_mask[block] = (_read(mask, plan.mask, plan.promote, block) > 0).astype(np.uint8)
        else:
            # Without a mask every voxel counts as labelled; 0 is boundary.
            out_mask[block] = 1
        done += int(np.prod([s.stop - s.start for s in block]))
        if progress:
            progress(done, total)


def _to_uint8(data: np.ndarray, scale_from: tuple[float, float] | None) -> np.ndarray[Any, Any]:
    if scale_from is None:
        return data
    low, high = scale_from
    if high <= low:
        return np.zeros(data.shape, np.uint8)
    scaled = (data.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
