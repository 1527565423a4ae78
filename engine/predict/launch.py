"""`python -m engine.predict RUN_DIR [--overwrite]`: predict affinities and LSDs blockwise.

One daisy task per volume (the project's `test/` volumes unless run.toml names others):
write blocks of `predict.block_shape` (a multiple of the model output), each reading the
model's context around it; the outputs `pred_affs` and `pred_lsds` (uint8, channels
first, voxel size and offset of the raw) are chunked to the write block, so no two
blocks share a chunk (engine.predict.plan). Workers (engine.predict.predictor) load the
checkpoint once and keep the device busy: several
blocks in flight per worker, their tiles run in batches of `predict.batch_size` in
`predict.precision` (engine.predict.tile_forward), reads and writes overlapping the forward pass.
A tile's output does not depend on its batch: the result does not depend on how many
workers ran, the batch size or the order of blocks, and equals `predict_in_process`
(engine.predict.predictor).

Each output records the hash of the checkpoint and of the settings that shape the
prediction. A run started again on outputs with the same hashes does only the blocks
not yet done (daisy's records beside the output); other hashes are refused unless
`--overwrite` (or run.toml `inputs.overwrite`). Exit codes as engine.train.trainer: 0 done,
1 failed, 2 bad input, 3 interrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from engine.blockwise.run import run_task, scheduling
from engine.blockwise.shell import entry_point
from engine.contract import EventWriter
from engine.errors import EngineError, InputError
from engine.predict.plan import (
    TRACKING,
    checkpoint_hash,
    network_config,
    plan_volumes,
    prepare_outputs,
    settings_hash,
)
from engine.project import lineage
from engine.runs.spec import read_spec
from engine.train.validation import VALIDATION_ATTR

logger = logging.getLogger(__name__)

EXIT_OK = 0


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
