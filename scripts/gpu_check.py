"""The GPU checks behind scripts/gpu_check.sh (see there)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU visible to torch (no NVIDIA driver, or a CPU-only torch "
            "build): nothing to check here"
        )
        return 0
    from engine import config as cfg
    from engine.data.volume import write_volume
    from engine.events import EventWriter, read_events
    from engine.rundir import RunSpec, read_spec, write_spec
    from engine.synth import synthesize
    from engine.train import Trainer, _StopFlag

    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    name = torch.cuda.get_device_name(0)
    print(f"gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    config = cfg.from_preset(
        "cremi",
        {
            "system": {"num_workers": 8, "cache_size": 16},
            "train": {
                "iterations": iterations,
                "checkpoint_every": iterations,
                "snapshot_every": 0,
            },
        },
    )
    with tempfile.TemporaryDirectory(prefix="lsdctl-gpu-") as tmp:
        project = Path(tmp) / "cremi"
        t0 = time.monotonic()
        raw, labels = synthesize((150, 320, 320), config.data.voxel_size, seed=0)
        write_volume(project / "train" / "synth.zarr", raw, labels, config.data.voxel_size)
        print(
            f"gpu_check: synthetic cremi-like volume {raw.shape} in {time.monotonic() - t0:.1f} s"
        )
        run_dir = project / "runs" / "gpu-check"
        write_spec(
            run_dir, RunSpec(id="gpu-check", kind="train", project=str(project), config=config)
        )
        events = EventWriter(run_dir / "events.jsonl")
        torch.cuda.reset_peak_memory_stats()
        code = Trainer(run_dir, read_spec(run_dir), events, _StopFlag()).run()
        events.close()
        if code != 0:
            print(f"gpu_check: training failed with exit code {code}; see {run_dir}")
            return 1
        loaded, _ = read_events(run_dir / "events.jsonl")
        steps = [
            (e["t"], e["step"]) for e in loaded if e["type"] == "metric" and e["name"] == "loss"
        ]
        warm = [s for s in steps if s[1] > min(20, iterations // 4)]
        rate = (warm[-1][1] - warm[0][1]) / max(warm[-1][0] - warm[0][0], 1e-9)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(
            f"gpu_check train cremi input={config.model.input_shape} "
            f"iterations={iterations} iterations_per_s={rate:.2f} peak_gpu_memory_gib={peak:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
