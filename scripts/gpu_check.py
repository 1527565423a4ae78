"""The GPU checks behind scripts/gpu_check.sh (see there).

1. Train the cremi geometry on CUDA. Each variant of `--train-variants` (precision,
   `+cl` channels-last, `+compile` torch.compile) trains on one fixed batch already on
   the GPU (the model's own speed: iterations/s, TFLOPS, peak memory); a bf16 forward is
   checked against fp32 (torch 2.9 turned cuDNN off for bf16 conv3d after silently wrong
   results with cuDNN 9.8-9.10); then the trainer runs end to end with real batches from
   the gunpowder pipeline (`--e2e-variant`): iterations/s and the data_wait share.
2. Predict a synthetic cremi-like volume blockwise from that checkpoint with one worker
   on GPU 0, in fp32 and bf16 and with batch sizes 1 and 4: voxels per second and GPU
   utilisation sampled with pynvml (over the run, and while blocks were being done);
   then how far bf16 is from fp32 (share of voxels within 2/255) and whether batch
   sizes agree bitwise.

`--cpu --preset tiny` runs the same steps on the CPU, to check the script itself on a
machine without a GPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _Utilisation:
    """GPU utilisation (%) sampled every 0.1 s while a block of code runs, with the time
    of each sample (so a window, e.g. while blocks were being done, can be averaged)."""

    def __init__(self, index: int = 0) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception as exc:  # no NVML: report it, do not fail the check
            print(f"gpu_check: no GPU utilisation ({type(exc).__name__}: {exc})")

    def __enter__(self) -> _Utilisation:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while self._handle is not None and not self._stop.wait(0.1):
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            self.samples.append((time.time(), int(rates.gpu)))

    def summary(self, window: tuple[float, float] | None = None) -> str:
        """Mean and max over the whole run, and the mean within `window` (epoch seconds)."""
        if not self.samples:
            return "gpu_util_mean=n/a gpu_util_max=n/a gpu_util_steady=n/a"
        values = [u for _, u in self.samples]
        inside = [u for t, u in self.samples if window and window[0] <= t <= window[1]]
        steady = f"{sum(inside) / len(inside):.0f}%" if inside else "n/a"
        return (
            f"gpu_util_mean={sum(values) / len(values):.0f}% gpu_util_max={max(values)}% "
            f"gpu_util_steady={steady}"
        )


def _variant(name: str) -> dict[str, object]:
    """'bf16+cl+compile' -> train config keys."""
    parts = name.split("+")
    unknown = set(parts[1:]) - {"cl", "compile"}
    if parts[0] not in ("auto", "fp32", "bf16", "fp16") or unknown:
        raise SystemExit(
            f"gpu_check: bad variant {name!r}: PRECISION[+cl][+compile], PRECISION one of "
            "auto, fp32, bf16, fp16"
        )
    return {"precision": parts[0], "channels_last": "cl" in parts, "compile": "compile" in parts}


def _fixed_batch(config: object, model: object, device: object) -> dict[str, object]:
    import torch

    shapes = model.output_shapes(config.model.input_shape)  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(0)
    tensors = {"raw": torch.rand(1, 1, *config.model.input_shape, generator=generator)}  # type: ignore[attr-defined]
    if "lsds" in shapes:
        tensors["gt_lsds"] = torch.rand(1, config.num_lsds(), *shapes["lsds"], generator=generator)  # type: ignore[attr-defined]
        tensors["lsds_weights"] = torch.ones(1, config.num_lsds(), *shapes["lsds"])  # type: ignore[attr-defined]
    if "affs" in shapes:
        n = len(config.affinity_neighborhood())  # type: ignore[attr-defined]
        tensors["gt_affs"] = (torch.rand(1, n, *shapes["affs"], generator=generator) > 0.5).float()
        tensors["affs_weights"] = torch.ones(1, n, *shapes["affs"])
    return {k: v.to(device) for k, v in tensors.items()}


def _sync(device: object) -> None:
    import torch

    if device.type == "cuda":  # type: ignore[attr-defined]
        torch.cuda.synchronize()


def _build_model(config: Any, device: Any) -> Any:
    """The config's network on `device` (every check builds the same one)."""
    from engine.models import build_model

    neighborhood = len(config.affinity_neighborhood())
    return build_model(config.train.model_type, config.model, config.data.dims, neighborhood).to(
        device
    )


def _step_flops(config: object, device: object) -> float:
    """FLOP of one training iteration (forward and backward), counted once in fp32."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from engine.train.distributed import Ranks
    from engine.train.precision import resolve_precision
    from engine.train.train_step import TrainStep

    model_type = config.train.model_type  # type: ignore[attr-defined]
    model = _build_model(config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    step = TrainStep(model, model_type, optimizer, resolve_precision("fp32", device), Ranks())
    tensors = _fixed_batch(config, model, device)
    counter = FlopCounterMode(display=False)
    with counter:
        step(tensors)
    return float(counter.get_total_flops())


def _train_variant(
    config: object, name: str, device: object, warmup: int, steps: int, flops: float
) -> None:
    """One variant on a fixed batch on the device: the model's speed without data."""
    import torch

    from engine.train.distributed import Ranks
    from engine.train.precision import resolve_precision
    from engine.train.train_step import TrainStep
    from engine.train.trainer import _channels_last

    keys = _variant(name)
    cuda = device.type == "cuda"  # type: ignore[attr-defined]
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model_type = config.train.model_type  # type: ignore[attr-defined]
    model = _build_model(config, device)
    tensors = _fixed_batch(config, model, device)
    if keys["channels_last"]:
        layout = _channels_last(config.data.dims)  # type: ignore[attr-defined]
        model = model.to(memory_format=layout)
        tensors["raw"] = tensors["raw"].contiguous(memory_format=layout)  # type: ignore[attr-defined]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    warnings: list[str] = []
    precision = resolve_precision(str(keys["precision"]), device)  # type: ignore[arg-type]
    step = TrainStep(
        model, model_type, optimizer, precision, Ranks(), bool(keys["compile"]), warnings.append
    )
    start = time.monotonic()
    for _ in range(warmup):
        loss = step(tensors)
    _sync(device)
    warm_s = time.monotonic() - start
    start = time.monotonic()
    for _ in range(steps):
        loss = step(tensors)
    _sync(device)
    rate = steps / max(time.monotonic() - start, 1e-9)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    note = f" compile_failed={warnings[0]!r}" if warnings else ""
    print(
        f"gpu_check train mode=step variant={name} precision={precision.name} "
        f"channels_last={int(bool(keys['channels_last']))} compile={int(step.compiled)} "
        f"iterations_per_s={rate:.2f} tflops={flops * rate / 1e12:.3g} data_wait=n/a "
        f"peak_gpu_memory_gib={peak:.2f} warmup_s={warm_s:.1f} loss={float(loss):.4f}{note}",
        flush=True,
    )


def _bf16_check(config: object, device: object, channels_last: bool) -> bool:
    """The network forward in bf16 autocast against fp32, same weights and input."""
    import torch

    from engine.train.trainer import _channels_last

    torch.manual_seed(0)
    model = _build_model(config, device)
    model.eval()
    raw = _fixed_batch(config, model, device)["raw"]
    if channels_last:
        layout = _channels_last(config.data.dims)  # type: ignore[attr-defined]
        model = model.to(memory_format=layout)
        raw = raw.contiguous(memory_format=layout)  # type: ignore[attr-defined]
    with torch.no_grad():
        reference = model(raw)
        with torch.autocast(device.type, dtype=torch.bfloat16):  # type: ignore[attr-defined]
            low = model(raw)
    reference = reference if isinstance(reference, tuple) else (reference,)
    low = low if isinstance(low, tuple) else (low,)
    ok = True
    for name, a, b in zip(model.output_names, reference, low):
        diff = (b.float() - a.float()).abs()
        max_rel = float(diff.max() / a.abs().max().clamp(min=1e-12))
        mean_rel = float(diff.mean() / a.abs().mean().clamp(min=1e-12))
        # The mean: one voxel of ten million can be off by more, harmlessly; a broken
        # kernel moves the whole output.
        verdict = "FAIL" if mean_rel > 0.02 else "ok"
        ok = ok and verdict == "ok"
        print(
            f"gpu_check train check=bf16_vs_fp32 channels_last={int(channels_last)} "
            f"output={name} max_rel_diff={max_rel:.4%} mean_rel_diff={mean_rel:.4%} {verdict}",
            flush=True,
        )
    return ok


def _train(
    project: Path,
    config: object,
    iterations: int,
    cuda: bool,
    variant: str = "auto",
    name_suffix: str = "",
) -> Path:
    """The trainer end to end, with real batches: iterations/s and the data_wait share."""
    import torch

    from engine.contract import EventWriter, read_events
    from engine.project import config as cfg
    from engine.runs.spec import RunSpec, read_spec, write_spec
    from engine.train.trainer import Trainer, _StopFlag

    for key, value in _variant(variant).items():
        config = cfg.with_value(config, f"train.{key}", value)  # type: ignore[arg-type]
    name = "train-" + variant.replace("+", "-") + name_suffix
    run_dir = project / "runs" / name
    write_spec(run_dir, RunSpec(id=name, kind="train", project=str(project), config=config))  # type: ignore[arg-type]
    events = EventWriter(run_dir / "events.jsonl")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    code = Trainer(run_dir, read_spec(run_dir), events, _StopFlag()).run()
    events.close()
    if code != 0:
        raise SystemExit(f"gpu_check: training failed with exit code {code}; see {run_dir}")
    loaded, _ = read_events(run_dir / "events.jsonl")
    steps = [(e["t"], e["step"]) for e in loaded if e["type"] == "metric" and e["name"] == "loss"]
    skip = min(20, iterations // 4)
    warm = [s for s in steps if s[1] > skip]
    rate = (warm[-1][1] - warm[0][1]) / max(warm[-1][0] - warm[0][0], 1e-9)
    waits = [
        e["value"]
        for e in loaded
        if e["type"] == "metric" and e["name"] == "data_wait" and e["step"] > skip
    ]
    wait = f"{sum(waits) / len(waits):.2f}" if waits else "n/a"
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    print(
        f"gpu_check train mode=pipeline variant={variant}{name_suffix} "
        f"input={config.model.input_shape} "  # type: ignore[attr-defined]
        f"workers={config.system.batch_workers()} iterations={iterations} "  # type: ignore[attr-defined]
        f"iterations_per_s={rate:.2f} data_wait={wait} peak_gpu_memory_gib={peak:.2f}",
        flush=True,
    )
    return sorted((run_dir / "checkpoints").glob("*.pt"))[-1]


def _profile_e2e(project: Path, config: object, iterations: int, cuda: bool, variant: str) -> None:
    """The trainer end to end under torch.profiler: where the time of the process goes.

    Prints the profiled wall time, the device's busy time (its kernels and copies) and the
    host-to-device copies, then the kernels with the most device time and the operators
    with the most CPU time of their own: whether the GPU waits on the host (launches,
    copies, the batch feeder) or computes."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.monotonic()
    with profile(activities=activities) as prof:
        _train(project, config, iterations, cuda, variant, name_suffix="-profiled")
    wall = time.monotonic() - start
    averages = prof.key_averages()

    def device_s(entry: object) -> float:
        us = getattr(entry, "self_device_time_total", None)
        if us is None:
            us = getattr(entry, "self_cuda_time_total", 0.0)
        return float(us) / 1e6

    # The device's own events (kernels, copies): each operator's kernels are listed by
    # it too, so summing over every entry would count them twice.
    kernels = [e for e in averages if getattr(e, "device_type", None) == DeviceType.CUDA]
    device = sum(device_s(e) for e in kernels)
    copies = sum(device_s(e) for e in kernels if "HtoD" in e.key)
    print(
        f"gpu_check profile variant={variant} iterations={iterations} wall_s={wall:.1f} "
        f"device_busy_s={device:.1f} h2d_copy_s={copies:.2f} "
        f"(torch {torch.__version__}; the profiler slows the host side)",
        flush=True,
    )
    by_device = sorted(kernels, key=device_s, reverse=True)[:12]
    by_cpu = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    for title, rows in (("device", by_device), ("cpu", by_cpu)):
        for e in rows:
            print(
                f"gpu_check profile top_{title} {e.key[:60]!r} calls={e.count} "
                f"self_cpu_s={e.self_cpu_time_total / 1e6:.2f} self_device_s={device_s(e):.2f}",
                flush=True,
            )


def _predict(
    project: Path,
    config: object,
    checkpoint: Path,
    workers: int,
    gpus: list[int],
    precision: str,
    batch_size: int,
    tile_input: str = "model",
) -> Path:
    """One predict run in a subprocess, as a user starts it; prints its line, returns the
    output volume (for the comparisons). `tile_input`: predict.input_shape as ZxYxX, or
    "model" for the training input."""
    import math

    import zarr

    from engine.contract import read_events
    from engine.project import config as cfg
    from engine.runs.spec import Resources, RunSpec, write_spec

    config = cfg.with_value(config, "predict.precision", precision)  # type: ignore[arg-type]
    config = cfg.with_value(config, "predict.batch_size", batch_size)
    config = cfg.with_value(config, "predict.num_workers", workers)
    if tile_input != "model":
        shape = [int(v) for v in tile_input.split("x")]
        config = cfg.with_value(config, "predict.input_shape", shape)
    name = f"predict-{workers}-{precision}-{batch_size}-{tile_input}"
    run_dir = project / "runs" / name
    write_spec(
        run_dir,
        RunSpec(
            id=name,
            kind="predict",
            project=str(project),
            config=config,
            inputs={"checkpoint": str(checkpoint)},
            resources=Resources(workers=workers, gpus=gpus),
        ),
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    start = time.monotonic()
    with _Utilisation() as util, (run_dir / "log.txt").open("wb") as log:
        code = subprocess.run(
            [sys.executable, "-m", "engine.predict", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        ).returncode
    wall = time.monotonic() - start
    if code != 0:
        print((run_dir / "log.txt").read_text()[-4000:])
        raise SystemExit(f"gpu_check: predict {name} failed ({code})")
    events, _ = read_events(run_dir / "events.jsonl")
    result = next(e for e in reversed(events) if e["type"] == "result")
    block_voxels = math.prod(config.block_shape())
    output = Path(result["outputs"][0])
    volume_voxels = math.prod(zarr.open(str(output / "pred_affs"), mode="r").shape[1:])
    # Once every worker has its model loaded: the rate a long run settles at.
    done = sorted(e["t"] for e in events if e["type"] == "block" and e["status"] == "done")
    skip = min(workers * config.predict.batch_size, len(done) // 4)
    steady_s = done[-1] - done[skip] if len(done) > skip + 1 else 0.0
    steady = (len(done) - 1 - skip) * block_voxels / steady_s if steady_s > 0 else 0.0
    window = (done[skip], done[-1]) if steady_s > 0 else None
    print(
        f"gpu_check predict workers={workers} precision={precision} batch={batch_size} "
        f"tile_input={'x'.join(map(str, config.predict_shapes()[0]))} "  # type: ignore[attr-defined]
        f"blocks={result['blocks']} wall_s={wall:.1f} task_s={result['seconds']:.1f} "
        f"voxels_per_s={volume_voxels / result['seconds']:.3g} "
        f"steady_voxels_per_s={f'{steady:.3g}' if steady else 'n/a'} "
        f"blocks_per_s={result['blocks_per_s']:.2f} "
        f"{util.summary(window)}",
        flush=True,
    )
    # Each worker's own account: the share of its time in the forward's calls, and how
    # much of that was CPU (launching kernels) rather than waiting on the GPU.
    for log in sorted((run_dir / "workers").rglob("worker_*.err")):
        for line in log.read_text(errors="replace").splitlines():
            if " batches of up to " in line:
                print(f"gpu_check predict_worker {log.stem}: {line.split(' INFO ')[-1]}")
    return output


def _compare(outputs: dict[str, Path], a: str, b: str) -> None:
    """How far two predictions of the same volume are apart: the share of values within
    2/255, the share equal, the largest difference (all channels of both outputs)."""
    import numpy as np
    import zarr

    within = equal = total = 0
    worst = 0
    # A corner of up to 32 x 432 x 432 voxels (tens of millions of values per output):
    # the whole volume would cost more time than the predictions.
    corner = (slice(None), slice(0, 32), slice(0, 432), slice(0, 432))
    for name in ("pred_affs", "pred_lsds"):
        x = zarr.open(str(outputs[a] / name), mode="r")[corner].astype(np.int16)
        y = zarr.open(str(outputs[b] / name), mode="r")[corner].astype(np.int16)
        diff = np.abs(x - y)
        within += int((diff <= 2).sum())
        equal += int((diff == 0).sum())
        total += diff.size
        worst = max(worst, int(diff.max()))
    print(
        f"gpu_check predict_compare {a} vs {b}: within_2_of_255={within / total:.5f} "
        f"equal={equal / total:.5f} max_diff={worst}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("iterations", nargs="?", type=int, default=100)
    parser.add_argument("--preset", default="cremi")
    parser.add_argument("--cpu", action="store_true", help="Run the steps on the CPU.")
    parser.add_argument("--shape", default="144,432,432", help="Predicted volume, z,y,x.")
    parser.add_argument(
        "--workers",
        default="1",
        help="Predict workers (all on GPU 0), e.g. 1,4; '' for no predict.",
    )
    parser.add_argument(
        "--train-variants",
        default=None,
        help="Training variants on a fixed batch, PRECISION[+cl][+compile] separated by "
        "commas (default on CUDA: fp32,bf16,fp16,bf16+cl,bf16+cl+compile; "
        "on the CPU: fp32,bf16,fp32+cl); '' for none.",
    )
    parser.add_argument("--train-steps", type=int, default=40, help="Timed steps per variant.")
    parser.add_argument(
        "--train-warmup",
        type=int,
        default=5,
        help="Untimed steps first (compilation, cuDNN's timing).",
    )
    parser.add_argument(
        "--e2e-variant",
        default="auto",
        help="The variants of the end-to-end training runs, separated by commas (e.g. "
        "bf16,bf16+compile); predict uses the last run's checkpoint.",
    )
    parser.add_argument(
        "--batch-workers",
        default=None,
        help="system.num_workers of the end-to-end run (default: auto on CUDA, 0 on the CPU).",
    )
    parser.add_argument(
        "--profile-e2e",
        type=int,
        default=0,
        help="After the end-to-end runs, this many iterations of the last variant under "
        "torch.profiler (device busy time, copies, top operators); 0: none.",
    )
    parser.add_argument("--precisions", default="fp32,bf16", help="predict.precision values.")
    parser.add_argument("--batch-sizes", default="1,4", help="predict.batch_size values.")
    parser.add_argument(
        "--predict-inputs",
        default="model",
        help="predict.input_shape values, ZxYxX or 'model' (the training input), by commas.",
    )
    parser.add_argument(
        "--tile-yx",
        type=int,
        default=None,
        help="The predicted volume is the synthetic one repeated this often along y and x "
        "(more blocks, no more synthesis; default 2 on a GPU, 1 with --cpu).",
    )
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        print(
            "gpu_check: no CUDA GPU visible to torch (no NVIDIA driver, or a CPU-only torch "
            "build): nothing to check here"
        )
        return 0
    import numpy as np

    from engine.data.synth import synthesize
    from engine.data.volume import write_volume
    from engine.project import config as cfg

    if cuda:
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    config = cfg.from_preset(
        args.preset,
        {
            "system": {
                "num_workers": (
                    int(args.batch_workers)
                    if args.batch_workers not in (None, "auto")
                    else ("auto" if cuda else 0)
                ),
                "cache_size": 16,
            },
            "train": {
                "iterations": args.iterations,
                "checkpoint_every": args.iterations,
                "snapshot_every": 0,
                # The presets validate (cremi every 5000, tiny every 100 iterations); the
                # synthetic project has no val/ volume, and speed is measured here.
                "validate_every": 0,
            },
        },
    )
    with tempfile.TemporaryDirectory(prefix="lsdctl-gpu-") as tmp:
        project = Path(tmp) / "check"
        t0 = time.monotonic()
        raw, labels = synthesize((150, 320, 320), config.data.voxel_size, seed=0)
        write_volume(project / "train" / "synth.zarr", raw, labels, config.data.voxel_size)
        shape = tuple(int(v) for v in args.shape.split(","))
        raw, labels = synthesize(shape, config.data.voxel_size, seed=1)
        repeat = args.tile_yx or (1 if args.cpu else 2)
        # Prediction needs no labels (nor writing 8 bytes a voxel of them).
        raw = np.tile(raw, (1, repeat, repeat))
        write_volume(project / "test" / "synth.zarr", raw, None, config.data.voxel_size)
        print(f"gpu_check: synthetic volumes in {time.monotonic() - t0:.1f} s", flush=True)
        device = torch.device("cuda:0" if cuda else "cpu")
        default = "fp32,bf16,fp16,bf16+cl,bf16+cl+compile" if cuda else "fp32,bf16,fp32+cl"
        variants = [
            v
            for v in (args.train_variants if args.train_variants is not None else default).split(
                ","
            )
            if v
        ]
        for variant in variants:
            _variant(variant)  # a typo fails before minutes of work
        if variants:
            if cuda:
                print(f"gpu_check: cuDNN {torch.backends.cudnn.version()}", flush=True)
            flops = _step_flops(config, device)
            print(f"gpu_check train flop_per_iteration={flops:.4g}", flush=True)
            _bf16_check(config, device, channels_last=False)
            _bf16_check(config, device, channels_last=True)
        # Compiled variants last: compiling can take minutes, and a check cut short by its
        # time limit should still have given every other figure.
        variants.sort(key=lambda v: "+compile" in v)
        for variant in (v for v in variants if "+compile" not in v):
            _train_variant(config, variant, device, args.train_warmup, args.train_steps, flops)
        for variant in args.e2e_variant.split(","):
            _variant(variant)
        for variant in args.e2e_variant.split(","):
            checkpoint = _train(project, config, args.iterations, cuda, variant)
        if args.profile_e2e:
            last = args.e2e_variant.split(",")[-1]
            profiled = cfg.with_value(config, "train.iterations", args.profile_e2e)
            profiled = cfg.with_value(profiled, "train.checkpoint_every", args.profile_e2e)
            _profile_e2e(project, profiled, args.profile_e2e, cuda, last)
        outputs = {}
        gpus = [0] if cuda else []
        for workers in (int(w) for w in args.workers.split(",") if w):
            for precision in args.precisions.split(","):
                for batch in (int(b) for b in args.batch_sizes.split(",")):
                    for tile in args.predict_inputs.split(","):
                        key = f"w{workers}/{precision}/b{batch}/{tile}"
                        outputs[key] = _predict(
                            project, config, checkpoint, workers, gpus, precision, batch, tile
                        )
        # Precision against fp32, batch size against the first (bitwise: equal=1), a
        # larger tile input against the training input's, and the first worker count's
        # against the others (bitwise).
        keys = list(outputs)
        for key in keys:
            workers_, precision, batch_, tile = key.split("/")
            if precision != "fp32" and f"{workers_}/fp32/{batch_}/{tile}" in outputs:
                _compare(outputs, f"{workers_}/fp32/{batch_}/{tile}", key)
            first = next(
                k for k in keys if k.startswith(f"{workers_}/{precision}/") and k.endswith(tile)
            )
            if key != first:
                _compare(outputs, first, key)
            if tile != "model" and f"{workers_}/{precision}/{batch_}/model" in outputs:
                _compare(outputs, f"{workers_}/{precision}/{batch_}/model", key)
            # Workers share out the blocks, each queuing batches behind the running one:
            # the result must not change (bitwise).
            one = f"{keys[0].split('/')[0]}/{precision}/{batch_}/{tile}"
            if workers_ != keys[0].split("/")[0] and one in outputs:
                _compare(outputs, one, key)
        for variant in (v for v in variants if "+compile" in v):
            _train_variant(config, variant, device, args.train_warmup, args.train_steps, flops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
