"""Blockwise segmentation against waterz on the whole volume in memory, same affinities.

The data: a synthetic 128 x 384 x 384 label volume (8 nm, engine.data.synth) and affinities
made from it as a network predicts them (`affinities_from_labels`: a boundary two voxels
wide, noise), stored as a uint8 prediction. Both sides segment the same uint8
affinities with the same settings (seeded watershed, hist_quant_75, thresholds 0.1 to
0.9), each in a fresh process:

- whole volume: `engine.segment.segmentation.segment_in_memory`, the affinities read into memory,
  fragments and waterz over all of it at once (single-threaded, as waterz is).
- blockwise: `python -m engine.segment` with 2 local daisy workers, blocks of
  64 x 192 x 192 with 4 voxels of context on each side (8 blocks), every segmentation written
  to zarr.

Run from the repository root: ``.venv/bin/python bench/segment.py``. The last line is
``segment speed_ratio=<whole s / blockwise s> peak_mem_ratio=<whole / blockwise>``, peak
memory being the largest resident set of any one process of each side (the blockwise
run's scheduler or one of its workers). Goal: speed_ratio >= 1. It also prints the VOI
between the two results at each threshold.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import numpy as np  # noqa: E402
import zarr  # noqa: E402

from engine.data.synth import affinities_from_labels, synthesize  # noqa: E402
from engine.data.volume import create_array, write_volume  # noqa: E402
from engine.project import config as cfg  # noqa: E402
from engine.project.layout import init_project  # noqa: E402
from engine.runs.spec import Resources, RunSpec, write_spec  # noqa: E402

SHAPE = (128, 384, 384)
BLOCK = [64, 192, 192]
CONTEXT = [4, 4, 4]
WORKERS = 2

_WHOLE = """
import json, resource, sys, time
import zarr
from engine.runs.spec import read_spec
from engine.segment.segmentation import segment_in_memory
spec = read_spec(__import__("pathlib").Path(sys.argv[1]))
start = time.perf_counter()
affs = zarr.open(sys.argv[2] + "/pred_affs", mode="r")[:]
result = segment_in_memory(affs, spec.config)
seconds = time.perf_counter() - start
for t, seg in result.items():
    zarr.save_array(f"{sys.argv[3]}/{t:.2f}.zarr", seg)
print(json.dumps({"seconds": seconds,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _prepare(root: Path) -> tuple[Path, Path, cfg.ProjectConfig]:
    project = init_project("bench", "tiny", root=root)
    config = cfg.with_value(project.load_config(), "segment.block_shape", BLOCK)
    config = cfg.with_value(config, "segment.context", CONTEXT)
    project.save_config(config)
    raw, labels = synthesize(SHAPE, config.data.voxel_size, seed=3)
    write_volume(root / "volume.zarr", raw, labels, config.data.voxel_size)
    affs = affinities_from_labels(labels, seed=3)
    prediction = root / "prediction.zarr"
    create_array(
        prediction,
        "pred_affs",
        affs.shape,
        np.uint8,
        config.data.voxel_size,
        [0, 0, 0],
        chunks=(3, *BLOCK),
    )[:] = np.rint(affs * 255).astype(np.uint8)
    zarr.open_group(str(prediction), mode="a").attrs["source_volume"] = str(root / "volume.zarr")
    run_dir = project.runs_dir / "segment"
    write_spec(
        run_dir,
        RunSpec(
            id="segment",
            kind="segment",
            project=str(project.path),
            config=config,
            inputs={"volumes": [str(prediction)]},
            resources=Resources(workers=WORKERS),
        ),
    )
    return run_dir, prediction, config


def main() -> int:
    from engine.evaluate.metrics import score

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="lsdctl-bench-") as tmp:
        root = Path(tmp)
        run_dir, prediction, config = _prepare(root)
        # Blockwise first: RUSAGE_CHILDREN keeps the largest of all reaped processes.
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "engine.segment", str(run_dir)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        blockwise = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        whole_out = root / "whole"
        whole_out.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", _WHOLE, str(run_dir), str(prediction), str(whole_out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        whole = json.loads(done.stdout.strip().splitlines()[-1])
        for t in config.segment.thresholds:
            a = zarr.open(str(whole_out / f"{t:.2f}.zarr"), mode="r")[:]
            name = f"segmentation_{t:.2f}"
            b = zarr.open(str(run_dir / "segmentation" / prediction.name / name), mode="r")[:]
            s = score(b, a.astype(np.uint64))
            print(f"threshold {t:.2f}: VOI(blockwise, whole) = {s.voi_split + s.voi_merge:.4f}")
    print(f"volume {SHAPE}, blocks {BLOCK} + context {CONTEXT}, {WORKERS} workers")
    print(f"whole volume: {whole['seconds']:.2f} s, peak {whole['peak_kib'] / 1024:.0f} MiB")
    print(f"blockwise: {blockwise:.2f} s, largest process peak {peak / 1024:.0f} MiB")
    print(
        f"segment speed_ratio={whole['seconds'] / blockwise:.3f} "
        f"peak_mem_ratio={whole['peak_kib'] / peak:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
