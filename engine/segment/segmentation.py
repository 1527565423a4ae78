"""`python -m engine.segment RUN_DIR [--overwrite]`: fragments and agglomeration, blockwise.

For each prediction of the run's predict run (`inputs.volumes`, zarr with `pred_affs`),
three daisy tasks over the same grid of write blocks (`segment.block_shape`, chunks of
every output), each block reading `segment.context` more on each side:

1. fragments: watershed (or mutex watershed) on the affinities, cropped to the block,
   numbered `block_index * block_voxels + i`, so ids are unique and the same whichever
   worker did the block or how often; their nodes (center, size) go to the RAG.
2. agglomerate: waterz on the block's affinities and fragments; every RAG edge gets the
   score at which waterz merges its two fragments. An edge is written by the block that
   made its smaller fragment (known from the id), so each edge has one score.
3. relabel: after the RAG's connected components per threshold (in this process, one
   lookup table per threshold), every block's fragments are written as
   `segmentation_<t>`.

The RAG is `<output>.zarr/rag.sqlite` (SQLite, no server). waterz prints to stdout: that
happens in the workers, whose output goes to RUN_DIR/workers/. One block covering the
volume gives exactly waterz's whole-volume result (`segment_in_memory`). 2D volumes are
segmented as one section. Exit codes as engine.train.trainer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.blockwise.run import run_stages, scheduling
from engine.blockwise.shell import entry_point
from engine.blockwise.task import SKIPPED, Grid, Stage
from engine.contract import EventWriter
from engine.data.mask import MASK_ATTR, Mask, recorded
from engine.data.region import Region
from engine.data.region import resolve as resolve_region
from engine.data.volume import create_array, read_window, write_window
from engine.errors import EngineError, InputError
from engine.models.registry import segmentable_names
from engine.project.config import ProjectConfig
from engine.runs.spec import read_spec
from engine.train.validation import VALIDATION_ATTR

logger = logging.getLogger(__name__)

EXIT_OK = 0
SEGMENTATION = "segmentation"
FRAGMENTS = "fragments"
RAG_FILE = "rag.sqlite"
LUTS = "luts"
TRACKING = ".blocks"
STAGES = ("fragments", "agglomerate", "relabel")


def dataset_name(threshold: float) -> str:
    return f"segmentation_{threshold:.2f}"


@dataclass(frozen=True)
class SegmentPlan:
    """One prediction to segment: its affinities, the output container, the grid."""

    prediction: Path
    output: Path
    grid: Grid
    voxel_size: tuple[int, ...]
    shape: tuple[int, ...]
    source_volume: str
    neighborhood: list[list[int]]
    prediction_offset: tuple[int, ...] = ()
    """Where pred_affs starts (nm); the grid starts at the region's offset."""
    region: Region | None = None
    """The part of the prediction segmented (`--roi`); None: all of it."""
    mask: tuple[Path, str] | None = None
    """(volume, array) of the mask the prediction was made with: no fragments outside it."""

    def task_id(self, stage: str) -> str:
        return f"{stage}-{self.prediction.stem}"

    @property
    def block_voxels(self) -> int:
        return int(np.prod([b // v for b, v in zip(self.grid.block, self.voxel_size)]))

    @property
    def dtype(self) -> Any:
        """uint32 when every possible fragment id fits (halves what is written), else uint64."""
        largest = self.grid.num_blocks * self.block_voxels
        return np.uint32 if largest < 2**32 else np.uint64


def chosen_on_validation(prediction: Path) -> dict[str, Any] | None:
    """The validation record a prediction carries (`validation` attribute, written by
    predict when its checkpoint was validated during training): at least `threshold`."""
    import zarr

    found = zarr.open_group(str(prediction), mode="r").attrs.get(VALIDATION_ATTR)
    if isinstance(found, dict) and isinstance(found.get("threshold"), int | float):
        return found
    return None


def segment_config(config: ProjectConfig, predictions: Sequence[Path]) -> ProjectConfig:
    """`config` with the thresholds chosen on validation added to segment.thresholds:
    whatever the project's list says now, the segmentation evaluate reports exists."""
    chosen = [c["threshold"] for p in predictions if (c := chosen_on_validation(p)) is not None]
    have = {round(t, 6) for t in config.segment.thresholds}
    extra = [float(t) for t in chosen if round(float(t), 6) not in have]
    if not extra:
        return config
    thresholds = sorted({*config.segment.thresholds, *extra})
    segment = config.segment.model_copy(update={"thresholds": thresholds})
    return config.model_copy(update={"segment": segment})


def _settings(config: ProjectConfig) -> dict[str, Any]:
    segment = config.segment.model_dump(mode="json")
    segment["block_shape"] = config.segment_block_shape()
    segment["context"] = _context_voxels(config)
    return segment


def _context_voxels(config: ProjectConfig) -> list[int]:
    # At least one voxel: a block must see its fragments' neighbours across its faces.
    return [max(1, c) for c in (config.segment.context or config.context())]


def plan_segments(
    config: ProjectConfig,
    volumes: Sequence[Path],
    run_dir: Path,
    output_dir: Path | None = None,
    roi: str | None = None,
) -> list[SegmentPlan]:
    """One plan per prediction, segmented into `output_dir` (default RUN_DIR/segmentation),
    over the region `roi` of each (engine.data.region syntax; None: all of it). Blocks never
    read outside the region: segmenting a region equals segmenting the prediction cropped
    to it."""
    import zarr

    if not volumes:
        raise InputError("no predictions to segment: run `lsdctl predict` first")
    dims = config.data.dims
    plans = []
    for prediction in volumes:
        try:
            affs = zarr.open(str(prediction / "pred_affs"), mode="r")
        except (zarr.errors.PathNotFoundError, FileNotFoundError, ValueError):
            raise InputError(
                f"{prediction} has no pred_affs: segmenting needs affinities (a "
                f"{segmentable_names()} model)"
            ) from None
        attrs = affs.attrs.asdict()
        root = zarr.open_group(str(prediction), mode="r").attrs.asdict()
        voxel_size = tuple(int(v) for v in attrs["voxel_size"])
        offset = tuple(int(v) for v in attrs.get("offset", [0] * dims))
        shape = tuple(int(s) for s in affs.shape[1:])
        if len(voxel_size) != dims or len(shape) != dims:
            raise InputError(f"{prediction}: pred_affs is not {dims}D as the project")
        block = config.segment_block_shape()
        region = (
            resolve_region(roi, voxel_size, offset, shape, f"{prediction.name}/pred_affs")
            if roi
            else None
        )
        grid = Grid(
            offset=region.offset if region else offset,
            extent=region.shape if region else tuple(s * v for s, v in zip(shape, voxel_size)),
            block=tuple(b * v for b, v in zip(block, voxel_size)),
            context=tuple(c * v for c, v in zip(_context_voxels(config), voxel_size)),
        )
        plans.append(
            SegmentPlan(
                prediction=prediction.resolve(),
                output=(output_dir or run_dir / SEGMENTATION) / prediction.name,
                grid=grid,
                voxel_size=voxel_size,
                shape=region.voxel_shape(voxel_size) if region else shape,
                source_volume=str(root.get("source_volume", "")),
                neighborhood=[
                    list(o) for o in root.get("neighborhood") or config.affinity_neighborhood()
                ],
                prediction_offset=offset,
                region=region,
                mask=recorded(root),
            )
        )
    return plans


def prepare_outputs(plan: SegmentPlan, config: ProjectConfig, overwrite: bool) -> None:
    """Create the output arrays, or check that existing ones are this segmentation's."""
    import zarr

    predicted = zarr.open_group(str(plan.prediction), mode="r").attrs.asdict()
    identity = {
        "segment_settings": _settings(config),
        "prediction": str(plan.prediction),
        "prediction_checkpoint_sha256": predicted.get("checkpoint_sha256"),
        # The region and the mask (with its content hash) the prediction was made with.
        "prediction_region_sha256": predicted.get("region_sha256"),
        "roi": plan.region.as_json() if plan.region else None,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    if plan.output.exists():
        found = zarr.open_group(str(plan.output), mode="r").attrs.asdict()
        if found.get("segment_sha256") == digest:
            return
        if not overwrite:
            raise InputError(
                f"{plan.output} holds a segmentation of other predictions or settings: pass "
                "--overwrite to replace it, or segment into a new run"
            )
        shutil.rmtree(plan.output)
    block = config.segment_block_shape()
    for name in [FRAGMENTS, *(dataset_name(t) for t in config.segment.thresholds)]:
        create_array(
            plan.output,
            name,
            plan.shape,
            plan.dtype,
            plan.voxel_size,
            plan.grid.offset,
            chunks=block,
        )
    root = zarr.open_group(str(plan.output), mode="a")
    validation = chosen_on_validation(plan.prediction)
    if validation is not None:
        root.attrs[VALIDATION_ATTR] = validation
    root.attrs.update(
        {
            "source_volume": plan.source_volume,
            "prediction": str(plan.prediction),
            "roi": identity["roi"],
            MASK_ATTR: predicted.get(MASK_ATTR),
            "thresholds": list(config.segment.thresholds),
            "segment_settings": identity["segment_settings"],
            "segment_sha256": digest,  # last: an output without it is recreated
        }
    )


# ---- array helpers -------------------------------------------------------------------


def _clip(grid: Grid, start: Sequence[int], shape: Sequence[int]) -> tuple[list[int], list[int]]:
    """The part of a window inside the volume: blocks never read padding, so one block
    over the whole volume sees exactly what a whole-volume segmentation sees."""
    lo = [max(s, o) for s, o in zip(start, grid.offset)]
    hi = [min(s + n, o + e) for s, n, o, e in zip(start, shape, grid.offset, grid.extent)]
    return lo, [h - low for low, h in zip(lo, hi)]


def as_3d_affs(affs: np.ndarray, dims: int) -> np.ndarray:
    """Affinities as waterz takes them: (C>=3, z, y, x). A 2D (2, y, x) map becomes one
    section, with a zero z channel (no section above to connect to)."""
    if dims == 3:
        return affs
    z = np.zeros((1, 1, *affs.shape[1:]), dtype=affs.dtype)
    return np.concatenate([z, affs[:2, None]], axis=0)


def make_fragments(
    affs: np.ndarray, config: ProjectConfig, neighborhood: Sequence[Sequence[int]]
) -> np.ndarray:
    """Fragments (ids 1..n) of float affinities (C, z, y, x) in [0, 1]."""
    from engine.segment.fragments import fragments_mutex, fragments_watershed

    segment = config.segment
    if segment.fragments_method == "mutex":
        offsets = [list(o) if len(o) == 3 else [0, *o] for o in neighborhood]
        if config.data.dims == 2:
            offsets = [[0, 0, 0], *offsets]  # the zero z channel of as_3d_affs
        fragments, _ = fragments_mutex(affs, offsets)
        return fragments
    fragments, _ = fragments_watershed(
        affs,
        fragments_in_xy=segment.fragments_in_xy or config.data.dims == 2,
        min_seed_distance=segment.min_seed_distance,
        epsilon_agglomerate=segment.epsilon_agglomerate,
        fill_boundary=segment.fill_boundary,
    )
    return fragments


def segment_in_memory(
    affs: np.ndarray, config: ProjectConfig, neighborhood: Sequence[Sequence[int]] | None = None
) -> dict[float, np.ndarray]:
    """The whole-volume reference: fragments and waterz on all of `affs` at once.

    `affs` is uint8 or float as predicted, (C, *spatial); returns a segmentation per
    threshold of `segment.thresholds`, of the spatial shape.
    """
    from engine.segment.agglomerate import quiet_stdout, segment_whole_volume

    dims = config.data.dims
    floats = as_3d_affs(_to_float(affs), dims)
    with quiet_stdout():  # waterz's chatter goes to stderr, not into a caller's output
        fragments = make_fragments(floats, config, neighborhood or config.affinity_neighborhood())
        result = segment_whole_volume(
            floats, fragments, config.segment.thresholds, config.segment.merge_function
        )
    return {t: (s[0] if dims == 2 else s) for t, s in result.items()}


def _to_float(affs: np.ndarray) -> np.ndarray:
    if affs.dtype == np.uint8:
        return (affs.astype(np.float32) / np.float32(255)).astype(np.float32)
    return affs.astype(np.float32)


# ---- workers -------------------------------------------------------------------------


class _Worker:
    """What every stage's worker opens once: the config, its plan and the output arrays.

    daisy calls it per block; `process` is the same work for a block's write offset, which
    validation during training calls in grid order without daisy.
    """

    def __init__(self, config: ProjectConfig, plan: SegmentPlan) -> None:
        import zarr

        self.config = config
        self.plan = plan
        self.dims = config.data.dims
        self.affs = zarr.open(str(plan.prediction / "pred_affs"), mode="r")
        self.fragments = zarr.open(str(plan.output / FRAGMENTS), mode="r+")
        self.mask = Mask(*plan.mask, plan.voxel_size) if plan.mask else None

    def __call__(self, block: Any) -> str | None:
        return self.process(tuple(int(v) for v in block.write_roi.offset))

    def process(self, write_start: Sequence[int]) -> str | None:
        """The block's work; SKIPPED when it had none (no masked voxel)."""
        raise NotImplementedError

    def _outside_mask(self, write_start: Sequence[int]) -> bool:
        if self.mask is None:
            return False
        start, shape = self._window(write_start, context=False)
        return not self.mask.covers(start, shape)

    def _read(self, array: Any, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
        return read_window(array, self.plan.voxel_size, self.plan.grid.offset, start, shape)

    def _read_affs(self, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
        offset = self.plan.prediction_offset or self.plan.grid.offset
        return read_window(self.affs, self.plan.voxel_size, offset, start, shape)

    def _window(self, write_start: Sequence[int], context: bool) -> tuple[list[int], list[int]]:
        grid = self.plan.grid
        start = list(write_start)
        shape = list(grid.block)
        if context:
            start = [s - c for s, c in zip(start, grid.context)]
            shape = [n + 2 * c for n, c in zip(shape, grid.context)]
        return _clip(grid, start, shape)

    def _store(self) -> Any:
        from engine.segment.rag import RagStore

        return RagStore(self.plan.output / RAG_FILE)

    def _3d(self, array: np.ndarray) -> np.ndarray:
        return array if self.dims == 3 else array[None]


def _run_plan(run_dir: Path, task_id: str) -> tuple[ProjectConfig, SegmentPlan]:
    """The config and plan a worker of `task_id` in a segment run works on."""
    spec = read_spec(run_dir)
    config = segment_config(spec.config, _volumes(spec.inputs))
    stage, _, _ = task_id.partition("-")
    plans = plan_segments(config, _volumes(spec.inputs), run_dir, roi=_roi(spec.inputs))
    plan = next((p for p in plans if p.task_id(stage) == task_id), None)
    if plan is None:
        raise InputError(f"run {run_dir.name} has no volume for task {task_id}")
    return config, plan


def _volumes(inputs: dict[str, Any]) -> list[Path]:
    return [Path(str(v)) for v in inputs.get("volumes") or []]


def _roi(inputs: dict[str, Any]) -> str | None:
    return str(inputs["roi"]) if inputs.get("roi") else None


class FragmentsWorker(_Worker):
    def process(self, write_start: Sequence[int]) -> str | None:
        from engine.segment.fragments import relabel_block
        from engine.segment.rag import node_stats

        if self._outside_mask(write_start):
            return SKIPPED  # fragments stay 0 there, and the RAG gets no node
        plan = self.plan
        index = plan.grid.index(write_start)
        read_start, read_shape = self._window(write_start, context=True)
        write_start, write_shape = self._window(write_start, context=False)
        affs = as_3d_affs(_to_float(self._read_affs(read_start, read_shape)), self.dims)
        fragments = make_fragments(affs, self.config, plan.neighborhood)
        if self.mask is not None:
            fragments[self._3d(~self.mask.read(read_start, read_shape))] = 0
        inner = tuple(
            slice((w - r) // v, (w - r) // v + n // v)
            for w, r, n, v in zip(write_start, read_start, write_shape, plan.voxel_size)
        )
        cropped = fragments[(slice(None), *inner) if self.dims == 2 else inner]
        # Cropping leaves gaps in the ids: number them 1..n again before making them unique.
        ids, local = np.unique(cropped, return_inverse=True)
        local = local.reshape(cropped.shape).astype(np.uint64)
        if ids[0] != 0:
            local += np.uint64(1)
        unique = relabel_block(local, index, plan.block_voxels)
        stored = unique[0] if self.dims == 2 else unique
        write_window(
            self.fragments,
            plan.voxel_size,
            plan.grid.offset,
            write_start,
            stored.astype(plan.dtype),
        )
        voxel3 = plan.voxel_size if self.dims == 3 else (1, *plan.voxel_size)
        start3 = write_start if self.dims == 3 else [0, *write_start]
        nodes = node_stats(unique, voxel3, start3)
        with self._store() as store, store.transaction():
            store.write_nodes(nodes.ids, nodes.centers, nodes.sizes)
        return None


class AgglomerateWorker(_Worker):
    def process(self, write_start: Sequence[int]) -> str | None:
        from engine.segment.agglomerate import agglomerate_block, quiet_stdout

        if self._outside_mask(write_start):
            return SKIPPED  # no fragment of its own: no edge to own
        plan = self.plan
        start, shape = self._window(write_start, context=True)
        affs = as_3d_affs(_to_float(self._read_affs(start, shape)), self.dims)
        fragments = self._3d(self._read(self.fragments, start, shape).astype(np.uint64))
        with quiet_stdout():
            edges = agglomerate_block(
                affs,
                fragments,
                self.config.segment.merge_function,
                thresholds=self.config.segment.thresholds,
            )
        index = plan.grid.index(write_start)
        # The block that made an edge's smaller fragment owns it (ids encode their block).
        owner = (edges.u - np.uint64(1)) // np.uint64(plan.block_voxels)
        mine = owner == np.uint64(index)
        with self._store() as store, store.transaction():
            store.write_edges(*(np.asarray(column)[mine] for column in edges))
        return None


class RelabelWorker(_Worker):
    """Writes every threshold's segmentation of a block through its lookup table.

    The tables are memory-mapped and only the rows of the block's own fragments are
    read (a block's window holds only fragments it made, and their ids encode the
    block): a worker's memory is set by the block, not by the volume's fragment count.
    """

    def __init__(self, config: ProjectConfig, plan: SegmentPlan) -> None:
        import zarr

        super().__init__(config, plan)
        self.tables = {}
        self.outputs = {}
        for threshold in self.config.segment.thresholds:
            self.tables[threshold] = read_lut(self.plan.output, threshold)
            self.outputs[threshold] = zarr.open(
                str(self.plan.output / dataset_name(threshold)), mode="r+"
            )

    def process(self, write_start: Sequence[int]) -> str | None:
        from engine.segment.agglomerate import relabel

        if self._outside_mask(write_start):
            return SKIPPED
        start, shape = self._window(write_start, context=False)
        fragments = self._read(self.fragments, start, shape).astype(np.uint64)
        index, size = self.plan.grid.index(write_start), self.plan.block_voxels
        first, last = np.uint64(index * size + 1), np.uint64((index + 1) * size)
        for threshold, (keys, values) in self.tables.items():
            lo = int(np.searchsorted(keys, first))
            hi = int(np.searchsorted(keys, last, side="right"))
            table = (np.asarray(keys[lo:hi]), np.asarray(values[lo:hi]))
            write_window(
                self.outputs[threshold],
                self.plan.voxel_size,
                self.plan.grid.offset,
                start,
                relabel(fragments, table).astype(self.plan.dtype, copy=False),
            )
        return None


def fragments_worker(run_dir: Path, task_id: str) -> FragmentsWorker:
    return FragmentsWorker(*_run_plan(run_dir, task_id))


def agglomerate_worker(run_dir: Path, task_id: str) -> AgglomerateWorker:
    return AgglomerateWorker(*_run_plan(run_dir, task_id))


def relabel_worker(run_dir: Path, task_id: str) -> RelabelWorker:
    return RelabelWorker(*_run_plan(run_dir, task_id))


def segment_every_block(config: ProjectConfig, plan: SegmentPlan) -> dict[float, int]:
    """All three stages over every block, in grid order, in this process (validation
    during training): the same workers as a segment run, so the same result. The outputs
    must exist (`prepare_outputs`) and hold no earlier RAG. Returns segments per
    threshold."""
    offsets = plan.grid.block_offsets()
    for stage in (FragmentsWorker, AgglomerateWorker):
        worker = stage(config, plan)
        for start in offsets:
            worker.process(start)
    counts = write_luts(plan, config.segment.thresholds)
    relabel = RelabelWorker(config, plan)
    for start in offsets:
        relabel.process(start)
    return counts


def read_lut(output: Path, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(fragment ids ascending, segment ids) of a threshold, memory-mapped."""
    folder = output / LUTS
    return tuple(  # type: ignore[return-value]
        np.load(folder / f"{dataset_name(threshold)}.{c}.npy", mmap_mode="r")
        for c in ("fragments", "segments")
    )


def write_luts(plan: SegmentPlan, thresholds: Sequence[float]) -> dict[float, int]:
    """Connected components of the RAG per threshold, saved for the relabel workers.

    Streamed (engine.threshold_sweep): the edges are read in chunks and the tables written
    in chunks, so this holds about 16 bytes a fragment, never the edge list. Returns the
    number of segments per threshold.
    """
    from engine.segment.rag import RagStore
    from engine.segment.threshold_sweep import sweep

    folder = plan.output / LUTS
    folder.mkdir(exist_ok=True)
    found: dict[float, int] = {}
    fragment_count = 0
    with RagStore(plan.output / RAG_FILE) as store:
        for threshold, nodes, forest in sweep(store, thresholds):
            roots = forest.roots()
            name = dataset_name(threshold)
            np.save(folder / f".{name}.fragments.tmp.npy", nodes)
            (folder / f".{name}.fragments.tmp.npy").replace(folder / f"{name}.fragments.npy")
            # nodes is sorted, so a root (a smallest index) names the smallest fragment.
            _save_gathered(folder / f"{name}.segments.npy", nodes, roots)
            found[threshold] = forest.count()
            fragment_count = nodes.size
    counts = {threshold: found[float(threshold)] for threshold in thresholds}
    logger.info(
        "%s: RAG with %d fragments; segments per threshold %s",
        plan.prediction.name,
        fragment_count,
        counts,
    )
    return counts


_WRITE_CHUNK = 1 << 20


def _save_gathered(path: Path, values: np.ndarray, index: np.ndarray) -> None:
    """Save ``values[index]`` as one .npy file, atomically (a relabel worker never sees
    half a table), gathering one chunk at a time instead of the whole array at once."""
    tmp = path.with_name(f".{path.name}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=values.dtype, shape=index.shape)
    for a in range(0, index.size, _WRITE_CHUNK):
        out[a : a + _WRITE_CHUNK] = values[index[a : a + _WRITE_CHUNK]]
    out.flush()
    del out
    tmp.replace(path)


# ---- the scheduling side ---------------------------------------------------------------


_TARGETS = {
    "fragments": "engine.segment.segmentation:fragments_worker",
    "agglomerate": "engine.segment.segmentation:agglomerate_worker",
    "relabel": "engine.segment.segmentation:relabel_worker",
}


def run(run_dir: Path, overwrite: bool, events: EventWriter) -> int:
    from engine.segment.agglomerate import is_prebuilt

    spec = read_spec(run_dir)
    volumes = _volumes(spec.inputs)
    config = segment_config(spec.config, volumes)
    if not is_prebuilt(config.segment.merge_function):
        raise InputError(
            f"merge function {config.segment.merge_function!r} is not prebuilt in waterz and "
            "cannot be compiled here: use hist_quant_10/25/50/75/90 or mean"
        )
    plans = plan_segments(config, volumes, run_dir, roi=_roi(spec.inputs))
    overwrite = overwrite or bool(spec.inputs.get("overwrite"))
    for plan in plans:
        prepare_outputs(plan, config, overwrite)
    workers = max(1, spec.resources.workers)
    total = sum(len(STAGES) * p.grid.num_blocks for p in plans)
    logger.info(
        "segmenting %d volume(s) with %d worker(s): %d block-steps, thresholds %s, %s",
        len(plans),
        workers,
        total,
        config.segment.thresholds,
        config.segment.merge_function,
    )
    done = 0
    outputs, segments = [], {}
    common: dict[str, Any] = {
        "run_dir": run_dir,
        "events": events,
        "workers": workers,
        # CPU work: cluster jobs ask for no GPU, but get predict's queue, time and account.
        **scheduling(config, spec.resources.executor, gpu=False),
    }
    for plan in plans:
        # Fragments and agglomeration as one pipeline: a block is agglomerated as soon as
        # the fragments around it exist. Relabelling needs every edge first.
        passes = [
            [Stage(plan.task_id(s), _TARGETS[s], plan.output / TRACKING / s) for s in STAGES[:2]],
            [Stage(plan.task_id(s), _TARGETS[s], plan.output / TRACKING / s) for s in STAGES[2:]],
        ]
        for stages in passes:
            if stages[0].task_id.startswith("relabel"):
                segments[plan.output.name] = write_luts(plan, config.segment.thresholds)
            outcome = run_stages(stages=stages, grid=plan.grid, progress=(done, total), **common)
            names = "+".join(s.task_id.split("-")[0] for s in stages)
            if not outcome.ok:
                raise EngineError(f"{plan.prediction.name}, {names}: {outcome.error}")
            done += outcome.total
            logger.info(
                "%s %s: %d block-steps in %.1f s",
                plan.prediction.name,
                names,
                outcome.total,
                outcome.seconds,
            )
        outputs.append(str(plan.output))
    events.emit(
        "result",
        durable=True,
        outputs=outputs,
        thresholds=list(config.segment.thresholds),
        merge_function=config.segment.merge_function,
        segments={name: {f"{t:.2f}": n for t, n in c.items()} for name, c in segments.items()},
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return entry_point("python -m engine.segment", __doc__, run, argv)
