"""The GPU checks behind scripts/gpu_check.sh (see there).

1. Train the cremi geometry on CUDA: iterations per second, peak GPU memory.
2. Predict a synthetic cremi-like volume blockwise from that checkpoint with 1 and with
   4 workers (all on GPU 0): blocks per second and GPU utilisation sampled with pynvml.

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
    """GPU utilisation (%) sampled every 0.1 s while a block of code runs."""

    def __init__(self, index: int = 0) -> None:
        self.samples: list[int] = []
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
            self.samples.append(int(rates.gpu))

    def summary(self) -> str:
        if not self.samples:
            return "gpu_util_mean=n/a gpu_util_max=n/a"
        mean = sum(self.samples) / len(self.samples)
        return f"gpu_util_mean={mean:.0f}% gpu_util_max={max(self.samples)}%"


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
    project: Path, config: object, checkpoint: Path, workers: int, gpus: list[int]
) -> None:
    from engine.events import read_events
    from engine.rundir import Resources, RunSpec, write_spec

    name = f"predict-{workers}"
    run_dir = project / "runs" / name
    write_spec(
        run_dir,
        RunSpec(
            id=name,
            kind="predict",
            project=str(project),
            config=config,  # type: ignore[arg-type]
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
        raise SystemExit(f"gpu_check: predict with {workers} workers failed ({code})")
    events, _ = read_events(run_dir / "events.jsonl")
    result = next(e for e in reversed(events) if e["type"] == "result")
    # Once every worker has its model loaded: the rate a long run settles at.
    done = sorted(e["t"] for e in events if e["type"] == "block" and e["status"] == "done")
    skip = min(workers, len(done) // 4)
    steady = (len(done) - 1 - skip) / max(done[-1] - done[skip], 1e-9) if len(done) > 2 else 0
    print(
        f"gpu_check predict workers={workers} blocks={result['blocks']} "
        f"wall_s={wall:.1f} task_s={result['seconds']:.1f} "
        f"blocks_per_s={result['blocks_per_s']:.2f} steady_blocks_per_s={steady:.2f} "
        f"{util.summary()}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("iterations", nargs="?", type=int, default=100)
    parser.add_argument("--preset", default="cremi")
    parser.add_argument("--cpu", action="store_true", help="Run the steps on the CPU.")
    parser.add_argument("--shape", default="144,432,432", help="Predicted volume, z,y,x.")
    parser.add_argument("--workers", default="1,4")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        print(
            "gpu_check: no CUDA GPU visible to torch (no NVIDIA driver, or a CPU-only torch "
            "build): nothing to check here"
        )
        return 0
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
                # Speed only: validation is measured with the training run it belongs to.
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
        write_volume(project / "test" / "synth.zarr", raw, labels, config.data.voxel_size)
        print(f"gpu_check: synthetic volumes in {time.monotonic() - t0:.1f} s", flush=True)
        checkpoint = _train(project, config, args.iterations, cuda)
        for workers in (int(w) for w in args.workers.split(",")):
            _predict(project, config, checkpoint, workers, [0] if cuda else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
