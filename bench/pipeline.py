"""Benchmark the training pipeline with our AddLsds against the paper's LSD node, in one run.

The data: one synthetic 48 x 192 x 192 volume of 40 x 4 x 4 nm voxels (engine.data.synth,
CREMI-like), written to a temporary zarr. The geometry: the CREMI preset's augmentations
and LSDs (sigma 80 nm, downsample 2) with a small MTLSD-style net: input (28, 124, 124),
LSDs and affinities (16, 64, 64), about CREMI's input/output ratio. No model runs.

Both pipelines are the same `build_training_pipeline`, once with `AddLsds` and once with
`lsd.train.gp.AddLocalShapeDescriptor(labels, lsds, lsds_mask, sigma=80, downsample=2)`
(the `lsds` package, as the paper's training scripts used it) in its place; both run in
this process (no pre-cache workers), draw the same seeds and warm up; then their batches
alternate, so that both see the same load on a shared machine, and the ratio is that of
the total times of the same number of batches.

Then the CREMI geometry, as a new user trains it: the cremi preset unchanged (input
(132, 268, 268), LSDs and affinities (72, 144, 144), all its augmentations) on a
synthetic 150 x 420 x 420 volume with cells of 400 nm (a few hundred ids per input, about
as dense as CREMI's neurons), one thread for everything (BLAS, OpenMP). Its line,
``pipeline cremi_s_per_batch_core=<s>``, is the median CPU seconds of this process per
batch (`time.process_time`: what one core spends, less distorted by other load than wall
time, which is printed too); the goal is 2.0 s, so that 15 cores feed 7 batches/s.

Run from the repository root: ``.venv/bin/python bench/pipeline.py`` (needs ``pip install
lsds``; ``--profile`` adds a cProfile of our pipeline, ``--cremi-only`` skips the
comparison, ``--cremi-profile`` profiles the CREMI batches). The last line is
``pipeline speedup_vs_lsds=<ratio> batches_per_s=<x>``, batches per second being ours.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The repository root replaces this script's folder on the path: bench/lsd.py would
# shadow the `lsd` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])
# One core: OpenMP and BLAS pools are sized when numpy and scipy load.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from lsd.train.gp import AddLocalShapeDescriptor  # noqa: E402

import engine.train.pipeline as training  # noqa: E402
from engine.data.synth import synthesize  # noqa: E402
from engine.data.volume import write_volume  # noqa: E402
from engine.project.config import ProjectConfig, from_preset  # noqa: E402

VOLUME_SHAPE = (48, 192, 192)
VOXEL_SIZE = (40, 4, 4)
INPUT_SHAPE = (28, 124, 124)
OUTPUT_SHAPE = (16, 64, 64)
SIGMA = 80
DOWNSAMPLE = 2
WARMUP = 2
BATCHES = 8
SEED = 0

CREMI_VOLUME_SHAPE = (150, 420, 420)
# Cell diameter (nm) of the synthetic CREMI-like volume: about 380 ids per input of
# (132, 268, 268) voxels of (40, 4, 4) nm; synth's default (240 nm) gives some 1,350.
CREMI_CELL_NM = 400.0
CREMI_WARMUP = 1
CREMI_BATCHES = 5


def config() -> ProjectConfig:
    return from_preset(
        "cremi",
        {
            "model": {"lsd_sigma": SIGMA, "lsd_downsample": DOWNSAMPLE},
            "train": {"batch_size": 1},
        },
    )


def paper_lsds_node(cfg: ProjectConfig, keys: training.TrainingKeys) -> object:
    return AddLocalShapeDescriptor(
        keys.labels, keys.gt_lsds, lsds_mask=keys.lsds_weights, sigma=SIGMA, downsample=DOWNSAMPLE
    )


def build(cfg: ProjectConfig, volume: Path, seed: int | None = SEED) -> training.TrainingPipeline:
    return training.build_training_pipeline(
        cfg,
        [volume],
        input_shape=INPUT_SHAPE,
        lsds_shape=OUTPUT_SHAPE,
        affs_shape=OUTPUT_SHAPE,
        seed=seed,
        num_workers=0,
    )


def build_with_paper_node(cfg: ProjectConfig, volume: Path) -> training.TrainingPipeline:
    original = training._lsds_node
    training._lsds_node = paper_lsds_node  # type: ignore[assignment]
    try:
        return build(cfg, volume)
    finally:
        training._lsds_node = original


def run_both(cfg: ProjectConfig, volume: Path) -> tuple[list[float], list[float]]:
    """Seconds per batch of ours and of the paper's node, batches interleaved so that
    both see the same load on a shared machine."""
    ours, reference = build(cfg, volume), build_with_paper_node(cfg, volume)
    times: tuple[list[float], list[float]] = ([], [])
    with ours, reference:
        for _ in range(WARMUP):
            ours.next_batch()
            reference.next_batch()
        for _ in range(BATCHES):
            for pipeline, record in zip((ours, reference), times):
                start = time.perf_counter()
                pipeline.next_batch()
                record.append(time.perf_counter() - start)
    return times


def cprofile(cfg: ProjectConfig, volume: Path) -> str:
    profile = cProfile.Profile()
    with build(cfg, volume) as pipeline:
        for _ in range(WARMUP):
            pipeline.next_batch()
        profile.enable()
        for _ in range(BATCHES):
            pipeline.next_batch()
        profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(40)
    return text.getvalue()


def node_profile(cfg: ProjectConfig, volume: Path) -> str:
    """Time per batch spent in each node of ours (gunpowder's own timings, which
    exclude upstream nodes), largest first."""
    pipeline = build(cfg, volume, seed=None)
    totals: dict[str, float] = {}
    # next_batch's conditions (one BLAS thread), with gunpowder's timings kept
    with pipeline, training._one_blas_thread():
        for _ in range(WARMUP):
            pipeline.pipeline.request_batch(pipeline.request)
        start = time.perf_counter()
        for _ in range(BATCHES):
            batch = pipeline.pipeline.request_batch(pipeline.request)
            for (node, method), summary in batch.profiling_stats.get_timing_summaries().items():
                name = f"{node}.{method}" if method else node
                totals[name] = totals.get(name, 0.0) + summary.mean() * summary.counts()
        wall = (time.perf_counter() - start) / BATCHES
    lines = [f"time per batch by node (ms), of {wall * 1000:.0f} ms wall:"]
    for name, total in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"  {total / BATCHES * 1000:7.1f}  {name}")
    glue = wall - sum(totals.values()) / BATCHES
    lines.append(f"  {glue * 1000:7.1f}  sources, request copies, other glue")
    return "\n".join(lines)


def cremi(profile: bool) -> float:
    """Median CPU seconds per batch of the cremi preset's pipeline, one thread; prints
    the times (and a cProfile of the timed batches with `profile`)."""
    from threadpoolctl import threadpool_limits

    cfg = from_preset("cremi", {"train": {"batch_size": 1}})
    assert cfg.model.output_shape is not None  # set by validation
    output = tuple(cfg.model.output_shape)
    raw, labels = synthesize(
        CREMI_VOLUME_SHAPE, cfg.data.voxel_size, seed=SEED, cell_size_nm=CREMI_CELL_NM
    )
    crop = tuple(slice(0, n) for n in cfg.model.input_shape)
    print(
        f"cremi: volume {CREMI_VOLUME_SHAPE}, {int(labels.max())} labels "
        f"({len(np.unique(labels[crop]))} in one input); input {tuple(cfg.model.input_shape)}"
        f" -> lsds/affs {output}; {CREMI_BATCHES} batches after {CREMI_WARMUP} warm-up"
    )
    cpu: list[float] = []
    wall: list[float] = []
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        volume = Path(tmp) / "cremi.zarr"
        write_volume(volume, raw, labels, cfg.data.voxel_size)
        del raw, labels
        pipeline = training.build_training_pipeline(
            cfg,
            [volume],
            input_shape=cfg.model.input_shape,
            lsds_shape=output,
            affs_shape=output,
            seed=SEED,
            num_workers=0,
        )
        with pipeline:
            for _ in range(CREMI_WARMUP):
                pipeline.next_batch()
            for _ in range(CREMI_BATCHES):
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                if profile:
                    profiler.enable()
                pipeline.next_batch()
                if profile:
                    profiler.disable()
                cpu.append(time.process_time() - start_cpu)
                wall.append(time.perf_counter() - start_wall)
    print("cremi batch cpu s: " + " ".join(f"{t:.2f}" for t in cpu))
    print("cremi batch wall s: " + " ".join(f"{t:.2f}" for t in wall))
    if profile:
        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(25)
            print(text.getvalue())
    seconds = statistics.median(cpu)
    print(f"pipeline cremi_s_per_batch_core={seconds:.2f}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="cProfile our pipeline too")
    parser.add_argument(
        "--cremi-only", action="store_true", help="only the CREMI geometry, no comparison"
    )
    parser.add_argument("--cremi-profile", action="store_true", help="cProfile the CREMI batches")
    args = parser.parse_args()

    cremi(args.cremi_profile)
    if args.cremi_only:
        return

    cfg = config()
    raw, labels = synthesize(VOLUME_SHAPE, VOXEL_SIZE, seed=SEED)
    print(
        f"volume {VOLUME_SHAPE} voxel {VOXEL_SIZE} nm, {int(labels.max())} labels; "
        f"input {INPUT_SHAPE} -> lsds/affs {OUTPUT_SHAPE}; sigma {SIGMA} nm, "
        f"downsample {DOWNSAMPLE}; {BATCHES} batches after {WARMUP} warm-up"
    )
    with tempfile.TemporaryDirectory() as tmp:
        volume = Path(tmp) / "bench.zarr"
        write_volume(volume, raw, labels, VOXEL_SIZE)

        ours, reference = run_both(cfg, volume)
        for name, times in (
            ("ours (AddLsds)", ours),
            ("lsds (AddLocalShapeDescriptor)", reference),
        ):
            print(
                f"{name}: {sum(times) / len(times) * 1000:.0f} ms/batch mean, "
                f"{statistics.median(times) * 1000:.0f} median"
            )
        if args.profile:
            print(node_profile(cfg, volume))
            print(cprofile(cfg, volume))

    speedup = sum(reference) / sum(ours)
    print(f"pipeline speedup_vs_lsds={speedup:.2f} batches_per_s={len(ours) / sum(ours):.2f}")


if __name__ == "__main__":
    main()
