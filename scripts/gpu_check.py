"""The GPU checks behind scripts/gpu_check.sh (see there).

1. Train the cremi geometry on CUDA: iterations per second, peak GPU memory.
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


def _train(project: Path, config: object, iterations: int, cuda: bool) -> Path:
    import torch

    from engine.events import EventWriter, read_events
    from engine.rundir import RunSpec, read_spec, write_spec
    from engine.train import Trainer, _StopFlag

    run_dir = project / "runs" / "train"
    write_spec(run_dir, RunSpec(id="train", kind="train", project=str(project), config=config))  # type: ignore[arg-type]
    events = EventWriter(run_dir / "events.jsonl")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    code = Trainer(run_dir, read_spec(run_dir), events, _StopFlag()).run()
    events.close()
    if code != 0:
        raise SystemExit(f"gpu_check: training failed with exit code {code}; see {run_dir}")
    loaded, _ = read_events(run_dir / "events.jsonl")
    steps = [(e["t"], e["step"]) for e in loaded if e["type"] == "metric" and e["name"] == "loss"]
    warm = [s for s in steps if s[1] > min(20, iterations // 4)]
    rate = (warm[-1][1] - warm[0][1]) / max(warm[-1][0] - warm[0][0], 1e-9)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    print(
        f"gpu_check train input={config.model.input_shape} "  # type: ignore[attr-defined]
        f"iterations={iterations} iterations_per_s={rate:.2f} peak_gpu_memory_gib={peak:.2f}",
        flush=True,
    )
    return sorted((run_dir / "checkpoints").glob("*.pt"))[-1]


def _predict(
    project: Path,
    config: object,
    checkpoint: Path,
    workers: int,
    gpus: list[int],
    precision: str,
    batch_size: int,
) -> Path:
    """One predict run in a subprocess, as a user starts it; prints its line, returns the
    output volume (for the comparisons)."""
    import math

    import zarr

    from engine import config as cfg
    from engine.events import read_events
    from engine.rundir import Resources, RunSpec, write_spec

    config = cfg.with_value(config, "predict.precision", precision)  # type: ignore[arg-type]
    config = cfg.with_value(config, "predict.batch_size", batch_size)
    # A run given 1 worker would take predict.num_workers: set it too.
    config = cfg.with_value(config, "predict.num_workers", workers)
    name = f"predict-{workers}-{precision}-{batch_size}"
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
        f"blocks={result['blocks']} wall_s={wall:.1f} task_s={result['seconds']:.1f} "
        f"voxels_per_s={volume_voxels / result['seconds']:.3g} "
        f"steady_voxels_per_s={f'{steady:.3g}' if steady else 'n/a'} "
        f"blocks_per_s={result['blocks_per_s']:.2f} "
        f"{util.summary(window)}",
        flush=True,
    )
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
    parser.add_argument("--workers", default="1", help="Predict workers (all on GPU 0), e.g. 1,4.")
    parser.add_argument("--precisions", default="fp32,bf16", help="predict.precision values.")
    parser.add_argument("--batch-sizes", default="1,4", help="predict.batch_size values.")
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

    from engine import config as cfg
    from engine.data.volume import write_volume
    from engine.synth import synthesize

    if cuda:
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    config = cfg.from_preset(
        args.preset,
        {
            "system": {"num_workers": 8 if cuda else 0, "cache_size": 16},
            "train": {
                "iterations": args.iterations,
                "checkpoint_every": args.iterations,
                "snapshot_every": 0,
                "validate_every": 0,  # no val/ volume in this check
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
        checkpoint = _train(project, config, args.iterations, cuda)
        outputs = {}
        for workers in (int(w) for w in args.workers.split(",")):
            for precision in args.precisions.split(","):
                for batch in (int(b) for b in args.batch_sizes.split(",")):
                    key = f"w{workers}/{precision}/b{batch}"
                    outputs[key] = _predict(
                        project, config, checkpoint, workers, [0] if cuda else [], precision, batch
                    )
        # Precision against fp32, and batch size against the first (bitwise: equal=1).
        keys = list(outputs)
        for key in keys:
            workers_, precision, batch_ = key.split("/")
            if precision != "fp32" and f"{workers_}/fp32/{batch_}" in outputs:
                _compare(outputs, f"{workers_}/fp32/{batch_}", key)
            first = next(k for k in keys if k.startswith(f"{workers_}/{precision}/"))
            if key != first:
                _compare(outputs, first, key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
