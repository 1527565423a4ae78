"""Segment and evaluate at two volume sizes 8x apart, same blocks: memory and time scaling.

The data is made block by block, never whole (so a gigavoxel volume can be made too):
labels are the Voronoi cells of seeds jittered on a grid (`_labels`, a pure function of
the world position, so every chunk agrees with its neighbours), the affinities those
labels imply with noise (`_affinities`), written as a uint8 prediction beside a volume
holding the labels as ground truth.

Each size then runs `python -m engine.segment` and `python -m engine.evaluate` on it
(`--workers` local daisy workers, blocks of `--block` voxels), each in a fresh process
tree. Memory is the peak resident set (VmHWM) of every process of the tree, polled from
/proc, and the largest child rusage: a run's memory is its largest process (scheduler or
worker), which must be set by the blocks, not by the volume.

Run from the repository root: ``.venv/bin/python bench/scale.py``; the last line is
``scale mem_ratio=<peak RSS large/small> time_ratio=<t large/t small> voxels_per_s=<v>``
(goals: mem_ratio <= 1.3, time_ratio <= 9; v: voxels of the large volume segmented and
evaluated per second). ``--shape Z,Y,X`` runs one size only (e.g. the gigavoxel
256,2048,2048 with ``--workers 2``) and prints its wall times, peak memory per process
and disk used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import numpy as np  # noqa: E402
import zarr  # noqa: E402

from engine.data.synth import affinities_from_labels  # noqa: E402
from engine.data.volume import create_array  # noqa: E402
from engine.project import config as cfg  # noqa: E402
from engine.project.layout import init_project  # noqa: E402
from engine.runs.spec import Resources, RunSpec, write_spec  # noqa: E402

SMALL = (32, 256, 256)
LARGE = (64, 512, 512)  # 8x the voxels of SMALL
BLOCK = (32, 128, 128)
CONTEXT = [4, 8, 8]
VOXEL = [8, 8, 8]
CELL = np.array([16, 48, 48])  # seed grid spacing in voxels: cells of ~16x48x48
THRESHOLDS = [0.3, 0.7]


# ---- data, chunk by chunk ------------------------------------------------------------


def _seeds(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The jittered seed (voxels) of every grid cell lo..hi (inclusive), (cz, cy, cx, 3):
    a hash of the cell index, so every chunk sees the same seeds."""
    axes = [np.arange(a, b + 1) for a, b in zip(lo, hi)]
    cell = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.int64)
    h = (cell[..., 0] * 73856093) ^ (cell[..., 1] * 19349663) ^ (cell[..., 2] * 83492791)
    jitter = np.stack([(h >> s) % 1000 for s in (0, 10, 20)], axis=-1) / 1000.0
    return ((cell + jitter) * (CELL // FINE)).astype(np.float32)


FINE = np.array([1, 4, 4])  # labels are made on a grid this much coarser, then repeated


def _labels(start: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Labels of voxels start..start+shape: `_coarse_labels` repeated FINE times per axis
    (16x less work; boundaries step by 4 voxels in y and x)."""
    lo = np.asarray(start) // FINE
    hi = (np.asarray(start) + shape - 1) // FINE
    coarse = _coarse_labels(lo * 1, tuple(int(v) for v in hi - lo + 1))
    for axis, f in enumerate(FINE):
        coarse = np.repeat(coarse, f, axis=axis)
    crop = tuple(slice(a - b * f, a - b * f + n) for a, b, f, n in zip(start, lo, FINE, shape))
    return coarse[crop]


def _coarse_labels(start: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Voronoi labels of voxels start..start+shape: the nearest seed among the 27 cells
    around each voxel's own (z distances weighted 3x: flat cells, as EM sections);
    ids are 1 + the cell's index, made unique per cell."""
    coords = [np.arange(s, s + n) for s, n in zip(start, shape)]
    home = [c // g for c, g in zip(coords, CELL // FINE)]
    lo = np.array([h.min() - 1 for h in home])
    hi = np.array([h.max() + 1 for h in home])
    seeds = _seeds(lo, hi)
    best = np.full(shape, np.inf, np.float32)
    label = np.zeros(shape, np.uint64)
    weight = (3.0, 4.0, 4.0)  # z voxels are 3x as far apart as y/x ones, in coarse units
    for d in np.ndindex(3, 3, 3):
        index = [h - a + k - 1 for h, a, k in zip(home, lo, d)]
        seed = seeds[np.ix_(*index)]
        distance = sum(
            (
                weight[i]
                * (seed[..., i] - coords[i].reshape([-1 if j == i else 1 for j in range(3)]))
            )
            ** 2
            for i in range(3)
        )
        closer = distance < best
        best[closer] = distance[closer]
        cells = [(h + k - 1 + 2).astype(np.uint64) for h, k in zip(home, d)]
        flat = (
            cells[0][:, None, None] * np.uint64(10**8)
            + cells[1][None, :, None] * np.uint64(10**4)
            + cells[2][None, None, :]
        )
        label[closer] = np.broadcast_to(flat, shape)[closer]
    return label


def _affinities(labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 affinities (3, ...) of `labels` without its one-voxel halo on every side,
    as engine.data.synth makes them (a boundary two voxels wide, noise): the halo makes each
    chunk see the label edges on its faces as the whole volume would."""
    affs = affinities_from_labels(labels, seed=seed)[:, 1:-1, 1:-1, 1:-1]
    return np.rint(affs * 255).astype(np.uint8)


def make_data(root: Path, shape: tuple[int, ...], block: tuple[int, ...]) -> Path:
    """volume.zarr (labels) and prediction.zarr (pred_affs), written chunk by chunk."""
    volume, prediction = root / "volume.zarr", root / "prediction.zarr"
    create_array(volume, "raw", shape, np.uint8, VOXEL, [0, 0, 0], chunks=block)
    labels = create_array(volume, "labels", shape, np.uint64, VOXEL, [0, 0, 0], chunks=block)
    affs = create_array(
        prediction, "pred_affs", (3, *shape), np.uint8, VOXEL, [0, 0, 0], chunks=(3, *block)
    )
    for corner in np.ndindex(*[-(-s // b) for s, b in zip(shape, block)]):
        start = np.array(corner) * block
        size = tuple(int(min(b, s - a)) for a, b, s in zip(start, block, shape))
        halo = _labels(start - 1, tuple(n + 2 for n in size))
        where = tuple(slice(a, a + n) for a, n in zip(start, size))
        labels[where] = halo[1:-1, 1:-1, 1:-1]
        affs[(slice(None), *where)] = _affinities(halo, seed=hash(corner) % 2**31)
    zarr.open_group(str(prediction), mode="a").attrs.update(
        {"source_volume": str(volume), "neighborhood": [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]}
    )
    return prediction


# ---- measuring a process tree --------------------------------------------------------


class TreePeaks:
    """Polls /proc for every descendant of `pid` and keeps each one's VmHWM (peak RSS)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for pid in _descendants(self.pid):
                peak = _hwm_kib(pid)
                if peak is not None:
                    role = self.peaks.get(pid, (_role(pid), 0))[0]
                    self.peaks[pid] = (role, max(peak, self.peaks.get(pid, ("", 0))[1]))

    def stop(self) -> dict[int, tuple[str, int]]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _role(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    for marker in ("engine.segment", "engine.evaluate"):
        if marker in text:
            return marker.split(".")[1]
    return "worker" if "daisy" in text or "multiprocessing" in text else text[:40]


def _run(module: str, run_dir: Path, env: dict[str, str]) -> dict[str, object]:
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", module, str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(run_dir.parent / f"{run_dir.name}.stderr").open("w"),
    )
    poller = TreePeaks(process.pid)
    code = process.wait()
    seconds = time.perf_counter() - start
    peaks = poller.stop()
    if code != 0:
        err = (run_dir.parent / f"{run_dir.name}.stderr").read_text()[-3000:]
        raise SystemExit(f"{module} failed ({code}):\n{err}")
    return {"seconds": seconds, "peaks": sorted(peaks.values(), key=lambda p: -p[1])}


def measure(
    shape: tuple[int, ...], block: tuple[int, ...], workers: int, keep: Path | None
) -> dict:
    """Make the data, segment it, evaluate it: times, peaks per process, disk used."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="lsdctl-scale-", dir=keep)
    root = Path(tmp)
    try:
        start = time.perf_counter()
        prediction = make_data(root, shape, block)
        made = time.perf_counter() - start
        project = init_project("scale", "tiny", root=root / "projects")
        config = project.load_config()
        for key, value in (
            ("segment.block_shape", list(block)),
            ("segment.context", CONTEXT),
            ("segment.thresholds", THRESHOLDS),
            ("predict.num_workers", workers),
        ):
            config = cfg.with_value(config, key, value)
        segment_dir = project.runs_dir / "segment-1"
        write_spec(
            segment_dir,
            RunSpec(
                id="segment-1",
                kind="segment",
                project=str(project.path),
                config=config,
                inputs={"volumes": [str(prediction)]},
                resources=Resources(workers=workers),
            ),
        )
        segment = _run("engine.segment", segment_dir, env)
        evaluate_dir = project.runs_dir / "evaluate-1"
        write_spec(
            evaluate_dir,
            RunSpec(
                id="evaluate-1",
                kind="evaluate",
                project=str(project.path),
                config=config,
                inputs={"segment_run": str(segment_dir)},
                resources=Resources(workers=workers),
            ),
        )
        evaluate = _run("engine.evaluate", evaluate_dir, env)
        metrics = json.loads((evaluate_dir / "metrics.json").read_text())
        disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return {
            "shape": list(shape),
            "voxels": int(np.prod(shape)),
            "make_s": made,
            "segment": segment,
            "evaluate": evaluate,
            "children_maxrss_kib": children,
            "disk_bytes": disk,
            "headline": metrics["headline"],
        }
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _report(result: dict) -> None:
    made, disk = result["make_s"], result["disk_bytes"] / 2**20
    print(f"volume {tuple(result['shape'])}: {result['voxels']:,} voxels, data made in ", end="")
    print(f"{made:.1f} s, disk used {disk:.0f} MiB")
    for step in ("segment", "evaluate"):
        peaks = result[step]["peaks"]
        listed = ", ".join(f"{role} {kib / 1024:.0f}" for role, kib in peaks[:6])
        print(f"  {step}: {result[step]['seconds']:.1f} s wall; peak MiB per process: {listed}")
    h = result["headline"]
    print(f"  threshold {h['threshold']}: voi {h['voi']:.3f} arand {h['arand']:.3f}")


def _peak(result: dict) -> int:
    """The largest process of either step (KiB)."""
    return max(kib for step in ("segment", "evaluate") for _, kib in result[step]["peaks"])


def _seconds(result: dict) -> float:
    return float(result["segment"]["seconds"] + result["evaluate"]["seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", help="Z,Y,X: measure this one size only")
    parser.add_argument("--small", default=",".join(map(str, SMALL)))
    parser.add_argument("--large", default=",".join(map(str, LARGE)))
    parser.add_argument("--block", default=",".join(map(str, BLOCK)), help="Z,Y,X voxels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="make the data under this folder and keep it")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    block = tuple(int(v) for v in args.block.split(","))

    def one(shape: str) -> dict:
        # Each size in a process of its own: RUSAGE_CHILDREN and /proc peaks stay apart.
        command = [sys.executable, __file__, "--one", "--shape", shape, "--block", args.block]
        command += ["--workers", str(args.workers)]
        if args.keep:
            command += ["--keep", str(args.keep)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    if args.one:
        shape = tuple(int(v) for v in args.shape.split(","))
        print(json.dumps(measure(shape, block, args.workers, args.keep)))
        return 0
    if args.shape:
        _report(one(args.shape))
        return 0
    small, large = one(args.small), one(args.large)
    for result in (small, large):
        _report(result)
    ratio = large["voxels"] / small["voxels"]
    print(f"blocks {block}, {args.workers} workers, {ratio:.0f}x the voxels; a 2-core machine")
    print(
        f"scale mem_ratio={_peak(large) / _peak(small):.3f} "
        f"time_ratio={_seconds(large) / _seconds(small):.3f} "
        f"voxels_per_s={large['voxels'] / _seconds(large):.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
