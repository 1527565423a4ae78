"""Blockwise prediction against the bare model forward over the same blocks, in one run.

The data: a synthetic 112 x 168 x 168 volume (8 nm, engine.data.synth), the `tiny` preset's
MTLSD net (input 44^3, output 28^3), blocks of the output: 4 x 6 x 6 = 144 blocks;
`--scale N` makes it N times deeper (N x 144 blocks).

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

Since tiles run in batches the forward over the 144 blocks takes under 2 s of one core
each for two workers, less than the fixed cost of a run (the processes, importing torch
in each worker, loading the model: about 2 s here), so the line before the last splits
the wall time: `startup_s` until the first block started, `steady_ratio` the time from
there to the last block done over the strict reference. With `--scale 8` the fixed
cost weighs an eighth as much.

Run from the repository root: ``.venv/bin/python bench/predict.py [--scale N]``. The last line is
``predict overhead_ratio=<blockwise / reference> ideal_parallel_ratio=<blockwise / strict>
per_tile_ratio=<blockwise / per-tile> blocks_per_s=<x>``; goals: overhead_ratio <= 1.15,
ideal_parallel_ratio <= 1.10.
"""

from __future__ import annotations

import argparse
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
# The one-tile-at-a-time reference is slow (no oneDNN): timed on this many tiles at most,
# scaled to all of them.
PER_TILE_SAMPLE = 144


def _checkpoint(project_root: Path, shape: tuple[int, ...]) -> tuple[Path, cfg.ProjectConfig, Path]:
    """A tiny project with a one-iteration checkpoint (the weights do not change speed)."""
    from engine.train.trainer import main as train_main

    project = init_project("bench", "tiny", root=project_root)
    config = cfg.with_value(project.load_config(), "train.iterations", 1)
    config = cfg.with_value(config, "system.num_workers", 0)
    config = cfg.with_value(config, "train.validate_every", 0)  # no val/ volumes here
    project.save_config(config)
    raw, labels = synthesize((50, 50, 50), config.data.voxel_size, seed=0)
    write_volume(project.split_dir("train") / "a.zarr", raw, labels, config.data.voxel_size)
    raw, labels = synthesize(shape, config.data.voxel_size, seed=1)
    write_volume(project.split_dir("test") / "b.zarr", raw, labels, config.data.voxel_size)
    train = project.runs_dir / "train"
    write_spec(train, RunSpec(id="train", kind="train", project=str(project.path), config=config))
    if train_main([str(train)]) != 0:
        raise SystemExit("bench: training the checkpoint failed")
    return next((train / "checkpoints").glob("*.pt")), config, project.path


def _reference_seconds(
    checkpoint: Path, config: cfg.ProjectConfig, volume: Path, shape: tuple[int, ...]
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
    for corner in np.ndindex(*[s // o for s, o in zip(shape, out)]):
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
    sample = tiles[:PER_TILE_SAMPLE]
    per_tile = forward_seconds(sample, 1) * len(tiles) / len(sample) / WORKERS
    return everything, strict, per_tile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=1, help="a volume N times deeper")
    args = parser.parse_args()
    shape = (SHAPE[0] * args.scale, *SHAPE[1:])
    with tempfile.TemporaryDirectory(prefix="lsdctl-bench-") as tmp:
        checkpoint, config, project = _checkpoint(Path(tmp), shape)
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
        reference, strict, per_tile = _reference_seconds(checkpoint, config, volume, shape)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        started_at = time.time()  # the events' clock
        start = time.perf_counter()
        command = subprocess.run(
            [sys.executable, "-m", "engine.predict", str(run_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        blockwise = time.perf_counter() - start
        if command.returncode != 0:
            print(command.stderr[-3000:])
            return 1
        events = [json.loads(line) for line in (run_dir / "events.jsonl").open()]
        result = next(e for e in events if e["type"] == "result")
        first = min(e["t"] for e in events)
        starts = [
            e["t"] - first for e in events if e["type"] == "worker" and e["status"] == "started"
        ]
        blocks_run = [e for e in events if e["type"] == "block"]
        done = [e for e in blocks_run if e["status"] == "done"]
        busy = sum(e["seconds"] for e in done)
        startup = min(e["t"] for e in blocks_run) - started_at
        steady = max(e["t"] for e in done) - min(e["t"] for e in blocks_run)
        print(
            f"workers started at {[round(s, 2) for s in starts]} s after the run's first event; "
            f"first block at {startup:.2f} s after the command started; "
            f"last block done {steady:.2f} s later; "
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
    print(f"predict startup_s={startup:.2f} steady_ratio={steady / strict:.3f}")
    print(
        f"predict overhead_ratio={blockwise / reference:.3f} "
        f"ideal_parallel_ratio={blockwise / strict:.3f} "
        f"per_tile_ratio={blockwise / per_tile:.3f} blocks_per_s={blocks / blockwise:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
