"""The worker side of predict: a model loaded once, then block after block (read the raw
with its context, cut it into tiles, run them through the model in batches, write the
uint8 outputs). `predictor` is the factory engine.blockwise workers import
("engine.predict.predictor:predictor"); `predict_in_process` runs every block in this
process, the reference blockwise runs must equal.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.blockwise.task import SKIPPED
from engine.data.mask import Mask
from engine.data.volume import RAW, read_window, write_window
from engine.errors import InputError
from engine.models.registry import model_type_spec
from engine.predict.plan import VolumePlan, network_config, plan_volumes
from engine.project.config import ProjectConfig
from engine.runs.spec import read_spec

logger = logging.getLogger(__name__)


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
        # Blocks in flight: enough to fill the batch running on the device, on a GPU the
        # one queued behind it (engine.predict.tile_batcher; the CPU runs a batch as it
        # is handed over), the next one being read and the last one being written.
        batches = 4 if getattr(device, "type", "") == "cuda" else 3
        self.lanes = batches * -(-self.forward.batch // len(self.tile_starts))
        self.batcher = TileBatcher(self.forward, self.forward.batch, self.lanes)
        self._started = time.monotonic()

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
        batcher = self.batcher
        logger.info(
            "%d batches of up to %d tiles in %.1f s; the forward took %.1f s of it "
            "(%.1f s of CPU: the rest waited for the device, a core or the GIL)",
            batcher.batches,
            batcher.batch,
            time.monotonic() - self._started,
            batcher.forward_s,
            batcher.forward_cpu_s,
        )

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
