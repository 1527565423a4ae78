"""Blockwise evaluation: contingency tables per block, merged into one per segmentation.

Evaluate scores a segmentation on a region: the overlap of its ROI with its labels (and
`--roi`, when given). That region is cut into blocks (a daisy task, like predict and
segment, so it runs on Slurm or LSF too); the worker of a block reads the labels, the
masks and every segmentation of the block only, drops the voxels not scored (label 0,
outside `labels_mask` or the mask the prediction was made with) and writes one table
per segmentation (engine.evaluate.contingency) to `RUN_DIR/counts/NAME/BLOCK.npz`. Merging them
gives exactly the whole-region table: memory is bounded by one block and by the number
of distinct (label, segment) pairs, never by the number of voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.blockwise.task import SKIPPED, Grid
from engine.data.mask import Mask
from engine.data.region import Region
from engine.data.region import resolve as resolve_region
from engine.data.volume import LABELS, MASK, read_window
from engine.errors import InputError
from engine.evaluate.contingency import Accumulator, Table, count_pairs

COUNTS_DIR = "counts"
TRACKING = ".blocks"


@dataclass(frozen=True)
class CountPlan:
    """One segmentation to count: its datasets, its labels, masks and the block grid."""

    name: str
    segmentation: Path
    source: Path
    datasets: tuple[str, ...]
    voxel_size: tuple[int, ...]
    grid: Grid
    masks: tuple[tuple[Path, str], ...]
    folder: Path

    @property
    def task_id(self) -> str:
        return f"evaluate-{self.name}"

    @property
    def region(self) -> Region:
        return Region(self.grid.offset, self.grid.extent)


class _Placed:
    """A zarr array with its voxel size and offset (funlib attributes)."""

    def __init__(self, path: Path) -> None:
        import zarr

        self.array = zarr.open_array(str(path), mode="r")
        attrs = self.array.attrs.asdict()
        size = attrs.get("voxel_size") or attrs.get("resolution") or [1] * self.array.ndim
        self.voxel_size = tuple(int(v) for v in size)
        dims = len(self.voxel_size)
        self.offset = tuple(int(o) for o in attrs.get("offset") or (0,) * dims)
        self.shape = tuple(int(s) for s in self.array.shape[-dims:])
        self.path = path

    @property
    def ends(self) -> tuple[int, ...]:
        return tuple(o + s * v for o, s, v in zip(self.offset, self.shape, self.voxel_size))

    def read(self, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
        return read_window(self.array, self.voxel_size, self.offset, start, shape)


def plan_counts(
    name: str,
    segmentation: Path,
    source: Path,
    datasets: Sequence[str],
    block: Sequence[int],
    folder: Path,
    roi: str | None = None,
    masks: Sequence[tuple[Path, str]] = (),
) -> CountPlan:
    """The grid of blocks (`block` in voxels) over the region scored; InputError when the
    arrays do not line up, do not overlap, or `roi` is not inside the segmentation."""
    labels = _Placed(source / LABELS)
    arrays = [_Placed(segmentation / d) for d in datasets]
    voxel = labels.voxel_size
    lo, hi = list(labels.offset), list(labels.ends)
    for array in arrays:
        if array.voxel_size != voxel:
            raise InputError(
                f"{array.path} has voxel size {list(array.voxel_size)}, its labels "
                f"{list(voxel)}: they cannot be compared voxel by voxel"
            )
        if any((a - b) % v for a, b, v in zip(array.offset, labels.offset, voxel)):
            raise InputError(
                f"{array.path} (offset {list(array.offset)}) is not on the voxel grid of its "
                f"labels (offset {list(labels.offset)})"
            )
        lo = [max(a, b) for a, b in zip(lo, array.offset)]
        hi = [min(a, b) for a, b in zip(hi, array.ends)]
    if roi:
        first = arrays[0]
        region = resolve_region(roi, voxel, first.offset, first.shape, f"{segmentation.name}")
        lo = [max(a, b) for a, b in zip(lo, region.offset)]
        hi = [min(a, b + s) for a, b, s in zip(hi, region.offset, region.shape)]
    if any(h <= low for low, h in zip(lo, hi)):
        where = f" within --roi {roi}" if roi else ""
        raise InputError(f"{segmentation} does not overlap the labels of {source}{where}")
    all_masks = [*masks]
    if (source / MASK).is_dir() and (source, MASK) not in all_masks:
        all_masks.insert(0, (source, MASK))
    for volume, mask_name in all_masks:
        Mask(volume, mask_name, voxel)  # refused now if unusable
    grid = Grid(
        offset=tuple(lo),
        extent=tuple(h - low for low, h in zip(lo, hi)),
        block=tuple(b * v for b, v in zip(block, voxel)),
        context=(0,) * len(voxel),
    )
    return CountPlan(
        name, segmentation, source, tuple(datasets), voxel, grid, tuple(all_masks), folder
    )


class Counter:
    """A worker of an evaluate task: counts one block (engine.blockwise protocol)."""

    def __init__(self, plan: CountPlan) -> None:
        self.plan = plan
        self.labels = _Placed(plan.source / LABELS)
        self.arrays = {d: _Placed(plan.segmentation / d) for d in plan.datasets}
        self.masks = [Mask(v, a, plan.voxel_size) for v, a in plan.masks]
        plan.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, block: Any) -> str | None:
        return self.count(tuple(int(v) for v in block.write_roi.offset))

    def count(self, write_start: Sequence[int]) -> str | None:
        """Write the block's tables; SKIPPED when none of its voxels is scored."""
        grid = self.plan.grid
        start = [max(s, o) for s, o in zip(write_start, grid.offset)]
        ends = [
            min(s + b, o + e)
            for s, b, o, e in zip(write_start, grid.block, grid.offset, grid.extent)
        ]
        shape = [e - s for s, e in zip(start, ends)]
        truth = self.labels.read(start, shape)
        keep = truth != 0
        for mask in self.masks:
            keep &= mask.read(start, shape)
        path = self.plan.folder / f"{grid.index(write_start)}.npz"
        if not keep.any():
            path.unlink(missing_ok=True)
            return SKIPPED
        kept = truth[keep]
        del truth
        tables: dict[str, Any] = {}
        for name, array in self.arrays.items():
            table = count_pairs(kept, array.read(start, shape)[keep])
            tables.update({f"{name}/gt": table.gt, f"{name}/seg": table.seg})
            tables[f"{name}/count"] = table.count
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **tables)
        tmp.replace(path)
        return None


def block_files(plan: CountPlan) -> list[Path]:
    """The blocks' table files (written ones, not half-written temporaries), sorted."""
    return [p for p in sorted(plan.folder.glob("*.npz")) if not p.name.startswith(".")]


def merged(plan: CountPlan) -> dict[str, Table]:
    """Every dataset's table over the whole region, from the blocks' files (all of it in
    memory: engine.partitioned_scores scores large ones part by part)."""
    totals = {name: Accumulator() for name in plan.datasets}
    for path in block_files(plan):
        with np.load(path) as data:
            for name, total in totals.items():
                total.add(Table(data[f"{name}/gt"], data[f"{name}/seg"], data[f"{name}/count"]))
    return {name: total.result() for name, total in totals.items()}


def count_every_block(plan: CountPlan) -> None:
    """Every block in this process, in grid order (validation during training, tests)."""
    counter = Counter(plan)
    for start in plan.grid.block_offsets():
        counter.count(start)


def counter(run_dir: Path, task_id: str) -> Counter:
    """The worker factory engine.blockwise imports ("engine.evaluate.block_counts:counter")."""
    from engine.evaluate.evaluation import count_plans
    from engine.runs.spec import read_spec

    plans = count_plans(run_dir, read_spec(run_dir))
    plan = next((p for p in plans if p.task_id == task_id), None)
    if plan is None:
        raise InputError(f"run {run_dir.name} has no segmentation for task {task_id}")
    return Counter(plan)
