"""`python -m engine.train RUN_DIR [--iterations N]`: train the model a run.toml describes.

Follows the run-directory contract (DESIGN.md): reads `run.toml`, appends metric,
progress and checkpoint events to `events.jsonl`, writes checkpoints atomically every
`train.checkpoint_every` iterations and at the end, and resumes from the latest one
(model, optimizer, learning-rate schedule, iteration) when started again. SIGTERM or
SIGINT: finish the iteration, save a checkpoint, exit 3. Exit codes: 0 done, 2 bad
input, 3 interrupted (resumable), 1 anything else.

With `init_from` among the inputs (`lsdctl train --init-from`), a new run starts from
that checkpoint's weights, with a fresh optimizer and iteration count (fine-tuning).

Speed (docs/training-speed.md): `train.precision` (bf16 autocast on GPUs that have it),
`train.compile`, `train.channels_last`, `train.cudnn_benchmark`; batches pinned and
copied asynchronously, and a `data_wait` metric (the share of each reporting interval
spent waiting for batches). A run given N GPUs trains on all N with DDP
(engine.train.distributed): rank 0 is this process and alone writes events and checkpoints.

Auto-context models (ACLSD, ACRLSD) train in two stages within one run: stage one, the
LSD net, for `train.lsd_iterations`; then stage two on its frozen output.

Validation (`train.validate_every`, engine.train.validation): every N iterations and at the
end, the current weights predict, segment and score the val/ volumes; a `validation`
event reports the scores at the best threshold. The checkpoint of the lowest VOI is
saved, named in `checkpoints/best.json` with its threshold, and kept through rotation;
`train.stop_after` ends the run when that many validation points brought no new best.
Auto-context models validate in stage two only (stage one trains no affinities).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.contract import CHECKPOINTS, EVENTS_FILE, EventWriter, read_events_of
from engine.entry import configure_logging, missing_run_dir
from engine.errors import EngineError, InputError
from engine.models.registry import model_type_spec
from engine.project.config import ModelType, ProjectConfig
from engine.runs.spec import RunSpec, read_spec
from engine.train.validation import History, can_validate, val_volumes

if TYPE_CHECKING:
    from engine.train.distributed import Ranks

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3
# Rate and progress events every this many iterations: the loss goes out every one.
_REPORT_EVERY = 10
# Rank r's batch seeds start at seed + r * this: no run has that many iterations.
_RANK_SEED_STRIDE = 2**32


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between iterations.

    Only in the process that installed it. gunpowder's PreCache forks a watchdog, which
    forks the workers; both inherit this handler. A worker dies as by default (its pool
    terminates it at teardown). The watchdog ignores the signal: a SIGTERM sent to the
    whole process group (timeout(1), a cancel) would otherwise kill it inside a
    multiprocessing wait and deadlock the pool's shutdown; it stops with its pool.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._owner = os.getpid()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner:
            if os.getppid() == self._owner:
                return  # the PreCache watchdog
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal = signum

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--iterations", type=int, default=None, help="Total iterations (overrides run.toml)."
    )
    # Set by rank 0 when it starts the other ranks of a data-parallel run.
    for hidden in ("--rank", "--world-size", "--store-port", "--parent"):
        parser.add_argument(hidden, type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging()
    run_dir: Path = args.run_dir
    if missing_run_dir(run_dir):
        return EXIT_BAD_INPUT
    if args.rank > 0:
        return _follow(run_dir, args)
    events = EventWriter(run_dir / EVENTS_FILE)
    stop = _StopFlag()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop.install()
    ranks = None
    try:
        spec = read_spec(run_dir)
        if args.iterations is not None and args.iterations < 1:
            raise InputError(f"--iterations must be positive, got {args.iterations}")
        import torch

        from engine.train.distributed import Ranks, world_size

        def rank_died(message: str) -> None:
            # From the watchdog thread: the others wait on the dead rank forever.
            logger.error("%s: the run fails", message)
            events.emit("error", durable=True, message=f"{message}; see the log above")
            os._exit(EXIT_FAILED)

        world = world_size(spec.resources.gpus, spec.config.system.gpus)
        if world > 1:
            # Bad input is said once, here, rather than by every rank it would start.
            Trainer(run_dir, spec, events, stop, args.iterations).check_inputs()
        extra = [] if args.iterations is None else ["--iterations", str(args.iterations)]
        ranks = Ranks.launch(run_dir, world, extra, torch.cuda.is_available(), rank_died)
        code = Trainer(run_dir, spec, events, stop, args.iterations, ranks).run()
        return ranks.finish(code)
    except InputError as exc:
        events.emit("error", durable=True, message=str(exc))
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except Exception as exc:
        events.emit("error", durable=True, message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        if ranks is not None:
            ranks.kill_others()  # none left after a clean finish
        events.close()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def _follow(run_dir: Path, args: argparse.Namespace) -> int:
    """Ranks 1..N-1 of a data-parallel run: train in step with rank 0, write nothing."""
    import torch

    from engine.train.distributed import Ranks

    stop = _StopFlag()
    stop.install()
    try:
        spec = read_spec(run_dir)
        ranks = Ranks.join(
            args.rank, args.world_size, args.store_port, args.parent, torch.cuda.is_available()
        )
        code = Trainer(run_dir, spec, _NoEvents(), stop, args.iterations, ranks).run()
        return ranks.finish(code)
    except Exception:
        logger.exception("rank %d failed", args.rank)
        return EXIT_FAILED


class _NoEvents(EventWriter):
    """The events of ranks other than 0: dropped (rank 0 reports for the run)."""

    def __init__(self) -> None:
        pass

    def emit(self, type_: str, durable: bool = False, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None


class Trainer:
    """One training run: model, optimizer, pipeline and the loop."""

    def __init__(
        self,
        run_dir: Path,
        spec: RunSpec,
        events: EventWriter,
        stop: _StopFlag,
        iterations: int | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        from engine.train.distributed import Ranks

        self.ranks = ranks or Ranks()
        self.run_dir = run_dir
        self.spec = spec
        self.config: ProjectConfig = spec.config
        self.events = events
        self.stop = stop
        self.total = iterations or self.config.train.iterations
        self.checkpoints = run_dir / CHECKPOINTS

    # ---- set-up ----------------------------------------------------------------------
    def _volumes(self) -> list[Path]:
        listed = self.spec.inputs.get("volumes")
        if listed:
            volumes = [Path(v) for v in listed]
        else:
            volumes = sorted((Path(self.spec.project) / "train").glob("*.zarr"))
        missing = [str(v) for v in volumes if not v.is_dir()]
        if missing:
            raise InputError(f"training volumes not found: {', '.join(missing)}")
        if not volumes:
            raise InputError(
                f"no training volumes in {Path(self.spec.project) / 'train'}: add one with "
                "`lsdctl data import` or `lsdctl data synth`"
            )
        return volumes

    def check_inputs(self) -> None:
        """InputError if the training or validation volumes are missing or unusable."""
        self._volumes()
        self._val_volumes()

    def _val_volumes(self) -> list[Path]:
        listed = self.spec.inputs.get("val_volumes")
        return val_volumes(
            Path(self.spec.project), self.config, [str(v) for v in listed] if listed else None
        )

    def _device(self) -> Any:
        import torch

        if torch.cuda.is_available():
            gpus = self.config.system.gpus
            rank = self.ranks.rank
            # Daemon-reserved GPUs arrive as CUDA_VISIBLE_DEVICES: they are then 0..N-1.
            index = rank if self.spec.resources.gpus or not gpus else gpus[rank]
            return torch.device(f"cuda:{index}")
        return torch.device("cpu")

    def _stage1_iterations(self) -> int:
        if not model_type_spec(self.config.train.model_type).auto_context:
            return 0
        return self.config.train.lsd_iterations or max(1, self.config.train.iterations // 2)

    # ---- the run -----------------------------------------------------------------------
    def run(self) -> int:
        import torch

        from engine.models import build_model
        from engine.runs.checkpoints import (
            checkpoint_path,
            latest_checkpoint,
            load_checkpoint,
            save_checkpoint,
            write_best,
        )
        from engine.train.feeder import DeviceFeeder
        from engine.train.pipeline import build_training_pipeline
        from engine.train.precision import resolve_precision
        from engine.train.train_step import TrainStep

        config = self.config
        ranks = self.ranks
        leader = ranks.leader
        volumes = self._volumes()
        validation_volumes = self._val_volumes() if leader else []
        if leader and config.train.validate_every and not can_validate(config):
            message = (
                f"no validation: a {config.train.model_type.value} model predicts no "
                "affinities to segment; checkpoints are chosen by iteration"
            )
            logger.warning(message)
            self.events.emit("warning", message=message)
        device = self._device()
        precision = resolve_precision(config.train.precision, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's device for this rank
            # The training shapes never change: timing cuDNN's algorithms once pays off.
            torch.backends.cudnn.benchmark = config.train.cudnn_benchmark
        if config.train.seed is not None:
            torch.manual_seed(config.train.seed)
        model_type = config.train.model_type
        auto_context = model_type_spec(model_type).auto_context
        model = build_model(
            model_type, config.model, config.data.dims, len(config.affinity_neighborhood())
        ).to(device)
        if config.train.channels_last:
            model = model.to(memory_format=_channels_last(config.data.dims))
        shapes = model.output_shapes(config.model.input_shape)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.train.learning_rate, betas=config.train.adam_betas
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        start = 0
        history = History()
        latest = latest_checkpoint(self.checkpoints)
        if latest is not None:
            state = load_checkpoint(latest[1], device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start = int(state["iteration"])
            logger.info("resumed from %s at iteration %d", latest[1].name, start)
            self.events.emit("resumed", iteration=start, path=str(latest[1]))
            past = read_events_of(self.run_dir / EVENTS_FILE, "validation")
            history = History.from_events(past, up_to=start)
        elif self.spec.inputs.get("init_from"):
            self._init_from(Path(str(self.spec.inputs["init_from"])), model, device)
        if start >= self.total:
            logger.info("already trained for %d iterations (asked for %d)", start, self.total)
            self.events.emit(
                "result",
                durable=True,
                iterations=start,
                checkpoint=str(latest[1]) if latest else None,
            )
            return EXIT_OK

        stage1 = self._stage1_iterations()
        if auto_context:
            model.freeze_stage1(start >= stage1)  # as DDP is to find it

        def warn(message: str) -> None:
            logger.warning(message)
            self.events.emit("warning", message=message)

        step = TrainStep(model, model_type, optimizer, precision, ranks, config.train.compile, warn)

        def state() -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "model_type": model_type.value,
                "config": config.model_dump(mode="json"),
            }

        saved: set[int] = set()

        def checkpoint(iteration: int, best: bool = False) -> Path:
            path = checkpoint_path(self.checkpoints, iteration)
            if iteration in saved and not best:
                return path
            if not leader:
                return path
            if iteration not in saved:
                protect = None if history.best is None else history.best["iteration"]
                path = save_checkpoint(
                    self.checkpoints, iteration, state(), config.train.keep_checkpoints, protect
                )
                saved.add(iteration)
            self.events.emit(
                "checkpoint", durable=True, iteration=iteration, path=str(path), best=best
            )
            return path

        from engine.train.validator import Validator

        validator = (
            Validator(config, validation_volumes, self.run_dir, device)
            if validation_volumes
            else None
        )
        validated: set[int] = set(history.steps)
        stopped_early: str | None = None

        def validate(iteration: int) -> None:
            """Score the weights of `iteration`; a new best is checkpointed and named."""
            nonlocal stopped_early
            assert validator is not None
            validated.add(iteration)
            try:
                result = validator(model, iteration)
            except Exception as exc:
                # Hours of training are worth more than one validation point: say so
                # loudly and train on (the traceback goes to the log).
                logger.exception("validation at iteration %d failed", iteration)
                message = f"validation at iteration {iteration} failed: {exc}; training goes on"
                self.events.emit("warning", durable=True, message=message)
                return
            best = history.add(iteration, result.voi, result.record())
            if best:
                assert history.best is not None
                path = checkpoint(iteration, best=True)
                write_best(self.checkpoints, {**history.best, "path": str(path)})
            self.events.emit("validation", durable=True, best=best, **result.event())
            patience = config.train.stop_after
            if patience is not None and history.since_best >= patience and history.best:
                stopped_early = (
                    f"validation has not improved for {history.since_best} points since "
                    f"iteration {history.best['step']} (train.stop_after {patience})"
                )

        workers = config.system.batch_workers(ranks.world)
        pipeline = build_training_pipeline(
            config,
            volumes,
            input_shape=config.model.input_shape,
            lsds_shape=shapes.get("lsds"),
            affs_shape=shapes.get("affs"),
            # Batch i of a resumed run must not repeat batch i of the first attempt.
            # Each rank its own batches; batch i of a resumed run is new too (rank r's
            # seeds are offset far beyond any iteration count).
            seed=(
                None
                if config.train.seed is None
                else config.train.seed + start + ranks.rank * _RANK_SEED_STRIDE
            ),
            num_workers=workers,
        )
        logger.info(
            "training %s on %s (rank %d of %d, %s%s%s): %d volume(s), input %s, outputs %s, "
            "iterations %d..%d",
            model_type.value,
            device,
            ranks.rank,
            ranks.world,
            precision.name,
            ", compiled" if config.train.compile else "",
            ", channels-last" if config.train.channels_last else "",
            len(volumes),
            config.model.input_shape,
            shapes,
            start,
            self.total,
        )
        self.events.emit("progress", done=start, total=self.total)
        board = self._tensorboard() if leader else None
        model.train()
        iteration = start

        def record(at: int, value: float) -> None:
            self.events.metric(at, "loss", value)
            if board is not None:
                board.add_scalar("loss", value, at)
            if not math.isfinite(value):
                raise EngineError(
                    f"the loss became {value} at iteration {at}: lower "
                    "train.learning_rate or check the training volumes (lsdctl data check)"
                )

        losses = _LaggedLoss(record)
        tick, tick_iteration = time.monotonic(), start
        feeder = DeviceFeeder(pipeline, device, config.train.channels_last, ahead=workers > 0)
        halted = False  # by a signal to any rank, or early stopping
        with pipeline, feeder:
            while iteration < self.total:
                # Every rank stops at the same iteration, or a collective waits forever.
                if ranks.agree(self.stop.signal is not None or stopped_early is not None):
                    halted = True
                    break
                try:
                    batch, tensors = feeder.next()
                except Exception:
                    # A signal to the process group also ends the batch workers.
                    if self.stop.signal is not None and not ranks.parallel:
                        halted = True
                        break
                    raise
                in_stage1 = iteration < stage1
                if auto_context:
                    model.freeze_stage1(not in_stage1)
                loss = step(tensors, in_stage1)
                scheduler.step()
                iteration += 1
                losses.push(iteration, loss)
                due = _Due.at(iteration, self.total, config)
                if due.anything:
                    losses.flush()  # what is reported at an iteration has its loss before it
                if due.rate:
                    now = time.monotonic()
                    rate = (iteration - tick_iteration) / max(now - tick, 1e-9)
                    # The share of the interval the loop waited for batches: near 1, the
                    # GPU starves (more system.num_workers); near 0, data keeps up.
                    wait = min(feeder.waited / max(now - tick, 1e-9), 1.0)
                    tick, tick_iteration, feeder.waited = now, iteration, 0.0
                    self.events.metric(iteration, "iterations_per_s", rate)
                    self.events.metric(iteration, "data_wait", wait)
                    self.events.metric(iteration, "learning_rate", scheduler.get_last_lr()[0])
                    self.events.emit("progress", done=iteration, total=self.total)
                # Stage one of the auto-context models trains no affinities yet.
                if validator is not None and due.validation and iteration >= stage1:
                    validate(iteration)
                if due.checkpoint and iteration < self.total:
                    checkpoint(iteration)
                if leader and due.snapshot:
                    self._snapshot(iteration, model, model_type, in_stage1, batch, tensors)
        losses.flush()
        last_loss = losses.last
        if stopped_early is not None:
            logger.info("stopped early at iteration %d: %s", iteration, stopped_early)
        # A signal to any rank interrupts every rank (resumable), early stopping does not.
        finished = not halted or stopped_early is not None or iteration >= self.total
        if validator is not None and finished and iteration not in validated:
            if iteration >= stage1:
                validate(iteration)  # the final weights are a candidate too
        checkpoint(iteration)
        if board is not None:
            board.close()
        if not leader:
            return EXIT_OK if finished else EXIT_INTERRUPTED
        if not finished:
            logger.info(
                "stopped by signal %s at iteration %d; checkpoint saved",
                self.stop.signal if self.stop.signal is not None else "to another rank",
                iteration,
            )
            self.events.emit("progress", done=iteration, total=self.total)
            return EXIT_INTERRUPTED
        best = history.best
        self.events.emit(
            "result",
            durable=True,
            iterations=iteration,
            final_loss=last_loss,
            checkpoint=str(latest_checkpoint(self.checkpoints)[1]),  # type: ignore[index]
            best=best,
            best_checkpoint=(
                str(checkpoint_path(self.checkpoints, best["iteration"])) if best else None
            ),
            stopped_early=stopped_early,
        )
        logger.info("done: %d iterations, last loss %.5f", iteration, last_loss)
        if best:
            logger.info(
                "best on validation: iteration %d, VOI %.4f at threshold %.2f",
                best["iteration"],
                best["voi"],
                best["threshold"],
            )
        return EXIT_OK

    def _init_from(self, path: Path, model: Any, device: Any) -> None:
        """Fine-tuning: the weights of `path`, with this run's fresh optimizer, schedule
        and iteration count (a resumed run has its own checkpoints and skips this)."""
        from engine.runs.checkpoints import load_weights

        state = load_weights(path, model, device)
        logger.info(
            "weights from %s (iteration %s); training starts at 0", path, state.get("iteration")
        )
        self.events.emit("initialized", path=str(path), iteration=state.get("iteration"))

    def _tensorboard(self) -> Any:
        """A SummaryWriter in RUN_DIR/tensorboard when train.tensorboard is on and installed."""
        if not self.config.train.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            message = (
                "train.tensorboard is on but tensorboard is not installed "
                "(pip install 'lsdctl[tensorboard]'): the loss goes to events.jsonl only"
            )
            logger.warning(message)
            self.events.emit("warning", message=message)
            return None
        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def _lr_factor(self, step: int) -> float:
        if self.config.train.lr_schedule == "constant":
            return 1.0
        progress = min(step / max(self.total, 1), 1.0)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    def _snapshot(
        self,
        iteration: int,
        model: Any,
        model_type: ModelType,
        in_stage1: bool,
        batch: dict[str, np.ndarray],
        tensors: dict[str, Any],
    ) -> None:
        """Raw, targets and predictions of the first sample, as zarr arrays.

        Each array has its own voxel size and offset (create_array: funlib attributes and
        OME-NGFF), so raw, targets and predictions of different extents line up: every
        array of a batch is centred in raw (engine.train.pipeline), and raw starts at 0, since
        the sample's place in its volume is not kept. Raw loses its channel axis.
        """
        import shutil

        import torch

        from engine.data.volume import create_array

        with torch.no_grad():
            # Stage one of an auto-context model is what trains: show its output alone.
            in_stage_one = in_stage1 and model_type_spec(model_type).auto_context
            network = model.stage1 if in_stage_one else model
            out = network(tensors["raw"])
            out = out if isinstance(out, tuple) else (out,)
            outputs = dict(zip(network.output_names, out))
        voxel_size = [int(v) for v in self.config.data.voxel_size]
        dims = len(voxel_size)
        arrays = {name: np.asarray(value[0]) for name, value in batch.items()}
        arrays["raw"] = arrays["raw"].reshape(arrays["raw"].shape[-dims:])
        for name, value in outputs.items():
            arrays[f"pred_{name}"] = value[0].float().cpu().numpy()
        raw_shape = arrays["raw"].shape
        path = self.run_dir / "snapshots" / f"iteration_{iteration:08d}.zarr"
        shutil.rmtree(path, ignore_errors=True)  # a resumed run snapshots again
        for name, data in arrays.items():
            shape = data.shape[-dims:]
            offset = [(r - s) // 2 * v for r, s, v in zip(raw_shape, shape, voxel_size)]
            array = create_array(
                path, name, data.shape, data.dtype, voxel_size, offset, chunks=data.shape
            )
            array[...] = data
        self.events.emit("snapshot", iteration=iteration, path=str(path))


class _LaggedLoss:
    """Each iteration's loss, read one iteration late. Reading a value off the GPU waits
    for it: read at once, every iteration the GPU's queue runs dry while the CPU
    prepares the next step (on an H200 the same bf16 steps ran at 6.28 iterations/s on a
    fixed batch, never read, and at 4.68 end to end, each loss read at once)."""

    def __init__(self, record: Callable[[int, float], None]) -> None:
        self._record = record
        self._pending: tuple[int, Any] | None = None
        self.last = math.nan

    def push(self, iteration: int, loss: Any) -> None:
        """Record the previous iteration's loss, keep this one's for later."""
        self.flush()
        self._pending = (iteration, loss.detach() if hasattr(loss, "detach") else loss)

    def flush(self) -> None:
        if self._pending is None:
            return
        iteration, loss = self._pending
        self._pending = None
        self.last = float(loss)
        self._record(iteration, self.last)


@dataclass(frozen=True)
class _Due:
    """What the loop does after an iteration besides training: report the rate (every
    _REPORT_EVERY and at the end), validate, checkpoint, snapshot."""

    rate: bool
    validation: bool
    checkpoint: bool
    snapshot: bool

    @classmethod
    def at(cls, iteration: int, total: int, config: ProjectConfig) -> _Due:
        train = config.train

        def every(n: int) -> bool:
            return bool(n) and iteration % n == 0

        return cls(
            rate=every(_REPORT_EVERY) or iteration == total,
            validation=every(train.validate_every),
            checkpoint=every(train.checkpoint_every),
            snapshot=every(train.snapshot_every),
        )

    @property
    def anything(self) -> bool:
        """Whether anything is reported: the loss of the iteration is recorded first."""
        return self.rate or self.validation or self.checkpoint or self.snapshot


def _channels_last(dims: int) -> Any:
    import torch

    return torch.channels_last_3d if dims == 3 else torch.channels_last
