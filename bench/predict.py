"""Blockwise prediction against the bare model forward over the same blocks, in one run.

The data: a synthetic 112 x 168 x 168 volume (8 nm, engine.data.synth), the `tiny` preset's
MTLSD net (input 44^3, output 28^3), blocks of the output: 4 x 6 x 6 = 144 blocks.

- blockwise: `python -m engine.predict` with 2 local daisy workers, wall time from the
  command's start to its end: process start-up, daisy, model loading, zarr reads and
  writes, uint8 quantisation, everything a user waits for.
- reference: the same model's forward pass over the same 144 input tiles, already in
  memory as tensors, in this one process with all cores' threads, in batches of
  predict.batch_size as predict runs them (padded the same way): just running the model,
  nothing blockwise around it.
- strict reference, printed beside it: that forward with one thread, divided by 2, what
  two workers could reach with no overhead at all (conv3d does not scale perfectly over
  threads, so this is the faster of the two).
- per-tile reference: the forward one tile at a time with one thread, divided by 2: how
  predict ran before it batched tiles (on the CPU torch runs one-sample 3D convolutions
  of this size without oneDNN, several times slower).

Run from the repository root: ``.venv/bin/python bench/predict.py``. The last line is
``predict overhead_ratio=<blockwise / reference> ideal_parallel_ratio=<blockwise / strict>
per_tile_ratio=<blockwise / per-tile> blocks_per_s=<x>``; goals: overhead_ratio <= 1.15,
ideal_parallel_ratio <= 1.10.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import numpy as np  # noqa: E402

from engine.data.synth import synthesize  # noqa: E402
from engine.data.volume import write_volume  # noqa: E402
from engine.project import config as cfg  # noqa: E402
from engine.project.layout import init_project  # noqa: E402
from engine.runs.spec import Resources, RunSpec, write_spec  # noqa: E402

SHAPE = (112, 168, 168)
WORKERS = 2


def _checkpoint(project_root: Path) -> tuple[Path, cfg.ProjectConfig, Path]:
    """A tiny project with a one-iteration checkpoint (the weights do not change speed)."""
    from engine.train.trainer import main as train_main

    project = init_project("bench", "tiny", root=project_root)
    config = cfg.with_value(project.load_config(), "train.iterations", 1)
    config = cfg.with_value(config, "system.num_workers", 0)
    config = cfg.with_value(config, "train.validate_every", 0)  # no val/ volumes here
    project.save_config(config)
    raw, labels = synthesize((50, 50, 50), config.data.voxel_size, seed=0)
    write_volume(project.split_dir("train") / "a.zarr", raw, labels, config.data.voxel_size)
    raw, labels = synthesize(SHAPE, config.data.voxel_size, seed=1)
    write_volume(project.split_dir("test") / "b.zarr", raw, labels, config.data.voxel_size)
    train = project.runs_dir / "train"
    write_spec(train, RunSpec(id="train", kind="train", project=str(project.path), config=config))
    if train_main([str(train)]) != 0:
        raise SystemExit("bench: training the checkpoint failed")
    return next((train / "checkpoints").glob("*.pt")), config, project.path


def _reference_seconds(
    checkpoint: Path, config: cfg.ProjectConfig, volume: Path
) -> tuple[float, float, float]:
    """Bare forward time over the tiles: batched with all cores' threads, batched with 1
    thread / WORKERS, and one tile at a time with 1 thread / WORKERS."""
    import torch
    import zarr

    from engine.data.input import normalize_raw
    from engine.models import build_model
    from engine.predict.tile_forward import batch_for

    model = build_model(
        config.train.model_type, config.model, 3, len(config.affinity_neighborhood())
    )
    model.load_state_dict(torch.load(str(checkpoint), weights_only=True)["model"])
    model.eval()
    raw = np.asarray(zarr.open(str(volume / "raw"), mode="r")[:])
    context = config.context()
    padded = np.pad(raw, [(c, c) for c in context])
    x = torch.from_numpy(normalize_raw(padded))
    out, inp = config.model.output_shape or [], config.model.input_shape
    tiles = []
    for corner in np.ndindex(*[s // o for s, o in zip(SHAPE, out)]):
        at = [c * o for c, o in zip(corner, out)]
        window = tuple(slice(a, a + i) for a, i in zip(at, inp))
        tiles.append(x[window][None, None].contiguous())
    size = batch_for(config.predict.batch_size, torch.device("cpu"))
    batches = [torch.cat(tiles[i : i + size]) for i in range(0, len(tiles), size)]
    if len(batches[-1]) < size:  # padded, as predict pads a short batch
        short = batches[-1]
        batches[-1] = torch.cat([short, torch.zeros_like(batches[0][: size - len(short)])])

    def forward_seconds(inputs: list[torch.Tensor], threads: int) -> float:
        torch.set_num_threads(threads)
        total = 0.0
        with torch.inference_mode():
            model(inputs[0])  # warm-up
            for item in inputs:
                start = time.perf_counter()
                model(item)
                total += time.perf_counter() - start
        return total

    everything = forward_seconds(batches, os.cpu_count() or 1)
    strict = forward_seconds(batches, 1) / WORKERS
    per_tile = forward_seconds(tiles, 1) / WORKERS
    return everything, strict, per_tile


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lsdctl-bench-") as tmp:
        checkpoint, config, project = _checkpoint(Path(tmp))
        volume = project / "test" / "b.zarr"
        run_dir = project / "runs" / "predict"
        write_spec(
            run_dir,
            RunSpec(
                id="predict",
                kind="predict",
                project=str(project),
                config=config,
                inputs={"checkpoint": str(checkpoint), "volumes": [str(volume)]},
                resources=Resources(workers=WORKERS),
            ),
        )
        reference, strict, per_tile = _reference_seconds(checkpoint, config, volume)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "engine.predict", str(run_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        blockwise = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        events = [json.loads(line) for line in (run_dir / "events.jsonl").open()]
        result = next(e for e in events if e["type"] == "result")
        first = min(e["t"] for e in events)
        starts = [
            e["t"] - first for e in events if e["type"] == "worker" and e["status"] == "started"
        ]
        done = [e for e in events if e["type"] == "block" and e["status"] == "done"]
        busy = sum(e["seconds"] for e in done)
        print(
            f"workers started at {[round(s, 2) for s in starts]} s after the run's first event; "
            f"last block done at {max(e['t'] for e in done) - first:.2f} s; "
            f"block time summed over workers {busy:.2f} s"
        )
    blocks = result["blocks"]
    print(f"blocks {blocks}, workers {WORKERS}, batch {config.predict.batch_size}")
    print(f"reference (bare forward, {os.cpu_count()} threads): {reference:.2f} s")
    print(f"strict reference (1-thread forward / {WORKERS}): {strict:.2f} s")
    print(
        f"per-tile reference (1-thread forward of one tile at a time / {WORKERS}): {per_tile:.2f} s"
    )
    print(f"blockwise (python -m engine.predict, wall): {blockwise:.2f} s")
    print(
        f"predict overhead_ratio={blockwise / reference:.3f} "
        f"ideal_parallel_ratio={blockwise / strict:.3f} "
        f"per_tile_ratio={blockwise / per_tile:.3f} blocks_per_s={blocks / blockwise:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
