"""`python -m engine.predict RUN_DIR [--overwrite]`: predict affinities and LSDs blockwise.

One daisy task per volume (the project's `test/` volumes unless run.toml names others):
write blocks of `predict.block_shape` (a multiple of the model output), each reading the
model's context around it; the outputs `pred_affs` and `pred_lsds` (uint8, channels
first, voxel size and offset of the raw) are chunked to the write block, so no two
blocks share a chunk. Workers load the checkpoint once and keep the device busy: several
blocks in flight per worker, their tiles run in batches of `predict.batch_size` in
`predict.precision` (engine.predict.tile_forward), reads and writes overlapping the forward pass.
A tile's output does not depend on its batch: the result does not depend on how many
workers ran, the batch size or the order of blocks, and equals `predict_in_process`.

Each output records the hash of the checkpoint and of the settings that shape the
prediction. A run started again on outputs with the same hashes does only the blocks
not yet done (daisy's records beside the output); other hashes are refused unless
`--overwrite` (or run.toml `inputs.overwrite`). Exit codes as engine.train.trainer: 0 done,
1 failed, 2 bad input, 3 interrupted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.blockwise.run import run_task, scheduling
from engine.blockwise.shell import entry_point
from engine.blockwise.task import SKIPPED, Grid
from engine.contract import RUN_FILE, EventWriter
from engine.data.mask import Mask
from engine.data.region import Region
from engine.data.region import resolve as resolve_region
from engine.data.volume import RAW, create_array, read_window, write_window
from engine.errors import EngineError, InputError
from engine.models.registry import model_type_spec
from engine.project import lineage
from engine.project.config import ProjectConfig
from engine.runs.spec import RunSpec, read_spec
from engine.train.validation import VALIDATION_ATTR

logger = logging.getLogger(__name__)

EXIT_OK = 0
PREDICTIONS = "predictions"
AFFS, LSDS = "pred_affs", "pred_lsds"
TRACKING = ".blocks"


@dataclass(frozen=True)
class VolumePlan:
    """One volume to predict: where its raw is, where the outputs go, the block grid."""

    source: Path
    output: Path
    grid: Grid
    voxel_size: tuple[int, ...]
    shape: tuple[int, ...]
    raw_offset: tuple[int, ...] = ()
    """Where the source's raw starts (nm); the grid starts at the region's offset."""
    region: Region | None = None
    """The part of the volume predicted (`--roi`); None: all of it."""
    mask: str = ""
    """The mask array of the source volume whose empty blocks are skipped; "": none."""

    @property
    def task_id(self) -> str:
        return f"predict-{self.source.stem}"

    def region_attrs(self) -> dict[str, Any]:
        """What the output records of its region and mask; hashed for resume."""
        from engine.data import mask

        return {
            "roi": self.region.as_json() if self.region else None,
            mask.MASK_ATTR: mask.describe(self.source, self.mask) if self.mask else None,
        }


def network_config(spec: RunSpec) -> ProjectConfig:
    """The config the checkpoint was trained with, when its training run is known.

    The network must be rebuilt as it was trained, whatever the project's config says
    now; only the predict section (blocks, workers) comes from this run.
    """
    checkpoint = Path(str(spec.inputs.get("checkpoint", "")))
    train_run = checkpoint.parent.parent
    if (train_run / RUN_FILE).is_file():
        trained = read_spec(train_run).config
        return trained.model_copy(update={"predict": spec.config.predict})
    return spec.config


def checkpoint_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_hash(config: ProjectConfig) -> str:
    """What shapes the values and the layout of a prediction, hashed."""
    relevant = {
        "model": config.model.model_dump(mode="json"),
        "model_type": config.train.model_type.value,
        "neighborhood": config.affinity_neighborhood(),
        "voxel_size": list(config.data.voxel_size),
        "normalize": config.preprocess.normalize,
        # Not the batch size: it does not change a value.
        "precision": config.predict.precision,
        "block_shape": config.block_shape(),
        "context": config.context(),
    }
    if config.predict.input_shape is not None:
        # Only when set, so that the outputs of runs from before the key still resume.
        relevant["tile_input"] = config.predict_shapes()[0]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def plan_volumes(spec: RunSpec, config: ProjectConfig, run_dir: Path) -> list[VolumePlan]:
    """The volumes a predict run names and their block grids; InputError for anything
    unusable."""
    listed = spec.inputs.get("volumes")
    if listed:
        volumes = [Path(str(v)) for v in listed]
    else:
        volumes = sorted((Path(spec.project) / "test").glob("*.zarr"))
    if not volumes:
        raise InputError(
            f"no volumes to predict in {Path(spec.project) / 'test'}: import one with "
            "`lsdctl data import FILE --split test` or name them with --volumes"
        )
    output_dir = Path(str(spec.inputs.get("output_dir") or run_dir / PREDICTIONS))
    roi = spec.inputs.get("roi")
    mask = str(spec.inputs.get("mask") or config.predict.mask)
    return plan_predictions(volumes, config, output_dir, str(roi) if roi else None, mask)


def plan_predictions(
    volumes: Sequence[Path],
    config: ProjectConfig,
    output_dir: Path,
    roi: str | None = None,
    mask: str = "",
) -> list[VolumePlan]:
    """Block grids of `volumes`, predicted into `output_dir/NAME.zarr` (predict runs and
    validation during training plan alike), over the region `roi` of each (engine.data.region
    syntax; None: the whole volume); `mask` names the array whose empty blocks are skipped."""
    import zarr

    dims = config.data.dims
    block_voxels = config.block_shape()
    context_voxels = config.context()
    plans = []
    for volume in volumes:
        try:
            raw = zarr.open(str(volume / RAW), mode="r")
        except (zarr.errors.PathNotFoundError, FileNotFoundError, ValueError):
            raise InputError(f"{volume} has no raw array: is it a project volume?") from None
        attrs = raw.attrs.asdict()
        voxel_size = tuple(int(v) for v in attrs.get("voxel_size", config.data.voxel_size))
        offset = tuple(int(v) for v in attrs.get("offset", [0] * dims))
        if len(voxel_size) != dims or raw.ndim != dims:
            raise InputError(
                f"{volume}: raw is {raw.ndim}D with voxel size {list(voxel_size)}, but the "
                f"model is {dims}D"
            )
        if list(voxel_size) != list(config.data.voxel_size):
            raise InputError(
                f"{volume} has voxel size {list(voxel_size)}, the model was trained at "
                f"{list(config.data.voxel_size)}: predict volumes of the training resolution"
            )
        region = (
            resolve_region(roi, voxel_size, offset, raw.shape, f"{volume.name}/raw")
            if roi
            else None
        )
        if mask:
            Mask(volume, mask, voxel_size)  # refused now if missing or unusable
        grid = Grid(
            offset=region.offset if region else offset,
            extent=region.shape if region else tuple(s * v for s, v in zip(raw.shape, voxel_size)),
            block=tuple(b * v for b, v in zip(block_voxels, voxel_size)),
            context=tuple(c * v for c, v in zip(context_voxels, voxel_size)),
        )
        shape = region.voxel_shape(voxel_size) if region else tuple(raw.shape)
        plans.append(
            VolumePlan(
                volume.resolve(),
                output_dir / volume.name,
                grid,
                voxel_size,
                shape,
                raw_offset=offset,
                region=region,
                mask=mask,
            )
        )
    names = [p.output.name for p in plans]
    if len(set(names)) != len(names):
        raise InputError(f"two volumes share a name ({names}): outputs would collide")
    return plans


def prepare_outputs(
    plan: VolumePlan, config: ProjectConfig, hashes: dict[str, str], overwrite: bool
) -> None:
    """Create the output arrays, or check that existing ones belong to this prediction."""
    import zarr

    if plan.output.exists():
        found = zarr.open_group(str(plan.output), mode="r").attrs.asdict()
        stale = {k: found.get(k) for k in hashes if found.get(k) != hashes[k]}
        if not stale:
            return
        if not overwrite:
            what = " and ".join(k.replace("_sha256", "") for k in stale)
            raise InputError(
                f"{plan.output} holds a prediction with another {what}: pass --overwrite to "
                "replace it, or predict into a new run"
            )
        logger.info("--overwrite: removing %s", plan.output)
        shutil.rmtree(plan.output)
    block = config.block_shape()
    outputs = model_type_spec(config.train.model_type).predicts
    channels = {AFFS: len(config.affinity_neighborhood()), LSDS: config.num_lsds()}
    for name in outputs:
        create_array(
            plan.output,
            name,
            (channels[name], *plan.shape),
            np.uint8,
            plan.voxel_size,
            plan.grid.offset,
            chunks=(channels[name], *block),
        )
    root = zarr.open_group(str(plan.output), mode="a")
    # Hashes last: an output without them is incomplete and gets recreated.
    root.attrs.update(
        {
            **plan.region_attrs(),
            "source_volume": str(plan.source),
            "model_type": config.train.model_type.value,
            "neighborhood": config.affinity_neighborhood(),
            **hashes,
        }
    )


# ---- the worker side -----------------------------------------------------------------


class Predictor:
    """A worker's model: loaded once, then called per block (engine.blockwise protocol).

    Built from a run (`from_run`, what workers do) or around a model already in memory
    (validation during training): either way every block goes through `predict_block`
    (read the raw with its context, cut it into tiles, run them, write the outputs).
    `lanes` threads call it at once, each with a block of its own, while one thread
    runs the tiles of all of them through the model in batches (engine.predict.tile_batcher):
    the reads and writes of some blocks overlap the forward pass of others. A block is
    reported done only when `predict_block` has returned, after its write.
    """

    def __init__(self, config: ProjectConfig, plan: VolumePlan, model: Any, device: Any) -> None:
        import zarr

        from engine.predict.tile_batcher import TileBatcher
        from engine.predict.tile_forward import TileForward

        self.config = config
        self.plan = plan
        self.model = model
        self.device = device
        given, output = config.predict_shapes()
        self.input_shape = tuple(given)
        self.output_shape = tuple(output)
        root = zarr.open_group(str(plan.output), mode="r+")
        spec = model_type_spec(config.train.model_type)
        self.arrays = {name: root[name] for name in spec.predicts}
        self.raw = zarr.open(str(plan.source / RAW), mode="r")
        self.mask = Mask(plan.source, plan.mask, plan.voxel_size) if plan.mask else None
        keys = dict(zip(spec.outputs, spec.predicts, strict=True))
        self.forward = TileForward(
            model,
            device,
            outputs={n: keys[n] for n in model.output_names if keys.get(n) in self.arrays},
            input_shape=self.input_shape,
            output_shape=self.output_shape,
            batch_size=config.predict.batch_size,
            precision=config.predict.precision,
            normalize=config.preprocess.normalize,
        )
        self.block_voxels = [b // v for b, v in zip(plan.grid.block, plan.voxel_size)]
        self.tile_starts = list(
            itertools.product(
                *[range(0, b, o) for b, o in zip(self.block_voxels, self.output_shape)]
            )
        )
        # Blocks in flight: enough to fill the batch on the device, the next one being
        # read and the last one being written.
        self.lanes = 3 * -(-self.forward.batch // len(self.tile_starts))
        self.batcher = TileBatcher(self.forward, self.forward.batch, self.lanes)

    @classmethod
    def from_run(cls, run_dir: Path, task_id: str, device: str | None = None) -> Predictor:
        """The model of the run's checkpoint, for the volume of `task_id`."""
        import torch

        from engine.models import build_model
        from engine.runs.checkpoints import load_checkpoint

        spec = read_spec(run_dir)
        config = network_config(spec)
        plan = next((p for p in plan_volumes(spec, config, run_dir) if p.task_id == task_id), None)
        if plan is None:
            raise InputError(f"run {run_dir.name} has no volume for task {task_id}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        where = torch.device(device)
        if where.type == "cpu":
            # Workers share the machine's cores; oversubscribing them slows everyone.
            workers = max(1, spec.resources.workers)
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        model = build_model(
            config.train.model_type,
            config.model,
            config.data.dims,
            len(config.affinity_neighborhood()),
        )
        state = load_checkpoint(Path(str(spec.inputs["checkpoint"])), where)
        trained_type = state.get("model_type")
        if trained_type and trained_type != config.train.model_type.value:
            raise InputError(
                f"the checkpoint holds a {trained_type} model, the run expects "
                f"{config.train.model_type.value}"
            )
        model.load_state_dict(state["model"])
        worker = cls(config, plan, model.to(where).eval(), where)
        logger.info(
            "predicting on %s in %s, batches of %d tiles, %d blocks in flight",
            where,
            worker.forward.precision,
            worker.forward.batch,
            worker.lanes,
        )
        return worker

    def __call__(self, block: Any) -> str | None:
        start = tuple(int(v) for v in block.write_roi.offset)
        if self.skips(start):
            return SKIPPED
        self.predict_block(start)
        return None

    def skips(self, write_start: Sequence[int]) -> bool:
        """Whether the block has no masked voxel: its output stays 0 (the fill value)."""
        return self.mask is not None and not self.mask.covers(write_start, self.plan.grid.block)

    def close(self) -> None:
        """End the batching thread (after the last block)."""
        self.batcher.close()

    def predict_block(self, write_start: Sequence[int]) -> None:
        """One block: read, predict, write. Several threads call it at once."""
        raw = self.read_block(write_start)
        self.write_block(write_start, self.predict_raw(raw))

    def read_block(self, write_start: Sequence[int]) -> np.ndarray:
        """The raw of the block at `write_start` with its context (zeros outside)."""
        grid = self.plan.grid
        read_start = [w - c for w, c in zip(write_start, grid.context)]
        read_shape = [b + 2 * c for b, c in zip(grid.block, grid.context)]
        raw_offset = self.plan.raw_offset or grid.offset
        return read_window(self.raw, self.plan.voxel_size, raw_offset, read_start, read_shape)

    def predict_raw(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """The uint8 outputs of one block's raw, its tiles run through the batcher."""
        tiles = [
            raw[tuple(slice(a, a + s) for a, s in zip(at, self.input_shape))]
            for at in self.tile_starts
        ]
        predicted = self.batcher.run(tiles)
        if len(predicted) == 1:  # the block is one tile: its outputs are the block's
            return dict(predicted[0])
        result: dict[str, np.ndarray] = {}
        for at, outputs in zip(self.tile_starts, predicted):
            target = tuple(slice(a, a + o) for a, o in zip(at, self.output_shape))
            for key, value in outputs.items():
                if key not in result:
                    result[key] = np.empty((value.shape[0], *self.block_voxels), np.uint8)
                result[key][(slice(None), *target)] = value
        return result

    def write_block(self, write_start: Sequence[int], outputs: dict[str, np.ndarray]) -> None:
        grid, voxel = self.plan.grid, self.plan.voxel_size
        for name, data in outputs.items():
            write_window(self.arrays[name], voxel, grid.offset, write_start, data)

    def predict_blocks(self, starts: Sequence[Sequence[int]]) -> None:
        """The blocks at `starts`, in this process, `lanes` at a time; the first error
        stops the rest and is raised."""
        pending = iter(list(starts))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def lane() -> None:
            while not errors:
                with lock:
                    start = next(pending, None)
                if start is None:
                    return
                try:
                    self.predict_block(start)
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=lane, name=f"predict-{i}") for i in range(self.lanes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]


def predictor(run_dir: Path, task_id: str) -> Predictor:
    """The worker factory engine.blockwise imports ("engine.predict.predictor:predictor")."""
    return Predictor.from_run(run_dir, task_id)


def predict_every_block(worker: Predictor) -> None:
    """Every block of the worker's volume (those the mask leaves out skipped), in this
    process; then the worker is closed."""
    try:
        starts = worker.plan.grid.block_offsets()
        worker.predict_blocks([start for start in starts if not worker.skips(start)])
    finally:
        worker.close()


def predict_in_process(run_dir: Path, device: str = "cpu") -> None:
    """Every block of every volume, in this process and in grid order: the reference
    blockwise runs must equal (the outputs must exist, see `prepare_outputs`)."""
    spec = read_spec(run_dir)
    config = network_config(spec)
    for plan in plan_volumes(spec, config, run_dir):
        predict_every_block(Predictor.from_run(run_dir, plan.task_id, device=device))


# ---- the scheduling side ---------------------------------------------------------------


def visible_gpus() -> list[int]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set (empty: none), else
    every GPU NVML counts; [] without an NVIDIA driver. torch is not imported for it."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [int(v) for v in listed.split(",") if v.strip().isdigit()]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return list(range(pynvml.nvmlDeviceGetCount()))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver (NVMLError_LibraryNotFound) or no GPU: the CPU
        return []


def run(run_dir: Path, overwrite: bool, events: EventWriter) -> int:
    spec = read_spec(run_dir)
    checkpoint = Path(str(spec.inputs.get("checkpoint") or ""))
    if not checkpoint.is_file():
        raise InputError(
            f"checkpoint {checkpoint} not found: train first, or name one with --checkpoint"
        )
    config = network_config(spec)
    overwrite = overwrite or bool(spec.inputs.get("overwrite"))
    plans = plan_volumes(spec, config, run_dir)
    hashes = {
        "checkpoint_sha256": checkpoint_hash(checkpoint),
        "config_sha256": settings_hash(config),
    }
    # The threshold validation chose with this checkpoint travels with its predictions,
    # so that segment includes it and evaluate reports the score there.
    validation = lineage.validation_of_checkpoint(checkpoint.resolve())
    for plan in plans:
        # The region and the mask (its content too) are part of what a resume must match.
        region = json.dumps(plan.region_attrs(), sort_keys=True).encode()
        own = {**hashes, "region_sha256": hashlib.sha256(region).hexdigest()}
        prepare_outputs(plan, config, own, overwrite)
        if validation is not None:
            import zarr

            zarr.open_group(str(plan.output), mode="a").attrs[VALIDATION_ATTR] = validation
    if validation is not None:
        logger.info(
            "checkpoint validated at iteration %s: threshold %.2f (VOI %.4f on val/)",
            validation["iteration"],
            validation["threshold"],
            validation["voi"],
        )
    predict = spec.config.predict
    # The resolver (engine.runs.resolve, which every run goes through) has already defaulted
    # these from predict.num_workers and predict.executor: taken as they are, an explicit
    # `--workers 1` or `--executor local` means what it says.
    executor, workers = spec.resources.executor, spec.resources.workers
    total = sum(p.grid.num_blocks for p in plans)
    # Run by hand (no daemon reserved any): the GPUs this process may use, one a worker.
    gpus = list(spec.resources.gpus) or (visible_gpus() if executor == "local" else [])
    logger.info(
        "predicting %d volume(s), %d blocks, with %d %s worker(s), GPUs %s, checkpoint %s",
        len(plans),
        total,
        workers,
        executor,
        gpus or "none",
        checkpoint,
    )
    done = 0
    outcomes = []
    for plan in plans:
        outcome = run_task(
            task_id=plan.task_id,
            grid=plan.grid,
            run_dir=run_dir,
            events=events,
            target="engine.predict.predictor:predictor",
            tracking_dir=plan.output / TRACKING,
            workers=workers,
            gpus=gpus,
            progress=(done, total),
            **scheduling(spec.config, executor, gpu=predict.cluster_gpu),
        )
        outcomes.append(outcome)
        if not outcome.ok:
            raise EngineError(f"{plan.source.name}: {outcome.error}")
        done += outcome.total
        logger.info(
            "%s: %d blocks (%d done before, %d outside the mask) in %.1f s",
            plan.source.name,
            outcome.total,
            outcome.skipped,
            outcome.masked,
            outcome.seconds,
        )
    computed = sum(o.completed - o.skipped - o.masked for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    events.emit(
        "result",
        durable=True,
        outputs=[str(p.output) for p in plans],
        blocks=total,
        computed=computed,
        skipped=sum(o.skipped for o in outcomes),
        masked_out=sum(o.masked for o in outcomes),
        roi=plans[0].region.as_json() if plans[0].region else None,
        mask=plans[0].mask or None,
        seconds=round(seconds, 3),
        blocks_per_s=round(computed / seconds, 3) if seconds > 0 else None,
        checkpoint=str(checkpoint),
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return entry_point("python -m engine.predict", __doc__, run, argv)
