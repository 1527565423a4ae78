"""Data-parallel training on the CPU: gloo ranks, as a run given N GPUs trains with NCCL.

The step on its own: two ranks, each on half of a fixed batch, give the losses and the
weights of one process on the whole batch. The entry point: `LSDCTL_CPU_RANKS=2 python -m
engine.train` trains with two processes, of which rank 0 alone writes events and
checkpoints; SIGTERM stops both with one checkpoint; kill -9 of rank 0 leaves no rank.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.contract import read_events
from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.models import build_model
from engine.project import config as cfg
from engine.project.config import ModelType
from engine.runs.checkpoints import list_checkpoints
from engine.train.distributed import CPU_RANKS_ENV, Ranks
from engine.train.precision import resolve_precision
from engine.train.train_step import TrainStep
from tests.engine.train.train_runs import make_run_dir, read_losses

ROOT = Path(__file__).parents[3]
_STEPS = 3


def _fixed_batch(config: cfg.ProjectConfig, samples: int) -> dict[str, torch.Tensor]:
    """A deterministic batch; all weights 1, so that each half holds as many counted
    voxels and the mean over the halves' losses is the loss of the whole."""
    model = _model(config)
    shapes = model.output_shapes(config.model.input_shape)
    generator = torch.Generator().manual_seed(7)
    lsds, affs = shapes["lsds"], shapes["affs"]
    return {
        "raw": torch.rand(samples, 1, *config.model.input_shape, generator=generator),
        "gt_lsds": torch.rand(samples, 10, *lsds, generator=generator),
        "lsds_weights": torch.ones(samples, 10, *lsds),
        "gt_affs": (torch.rand(samples, 3, *affs, generator=generator) > 0.5).float(),
        "affs_weights": torch.ones(samples, 3, *affs),
    }


def _model(config: cfg.ProjectConfig) -> Any:
    torch.manual_seed(0)
    return build_model(ModelType.MTLSD, config.model, 3, 3)


def _train(config: cfg.ProjectConfig, tensors: dict[str, torch.Tensor], ranks: Ranks) -> Any:
    model = _model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    precision = resolve_precision("fp32", torch.device("cpu"))
    step = TrainStep(model, ModelType.MTLSD, optimizer, precision, ranks)
    losses = [float(step(tensors)) for _ in range(_STEPS)]
    return losses, [p.detach().clone() for p in model.parameters()]


def _rank(rank: int, world: int, store_path: str, out: Any) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    config = cfg.from_preset("tiny")
    whole = _fixed_batch(config, world)
    half = {k: v[rank : rank + 1] for k, v in whole.items()}
    losses, params = _train(config, half, Ranks(rank, world))
    # As numpy: torch tensors would travel as shared memory this process takes along.
    out.put((rank, losses, [p.numpy() for p in params]))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_with_the_batch_doubled(tmp_path: Path) -> None:
    context = mp.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=_rank, args=(rank, 2, str(tmp_path / "store"), out))
        for rank in range(2)
    ]
    for process in processes:
        process.start()
    results = sorted(out.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    config = cfg.from_preset("tiny")
    torch.set_num_threads(1)
    losses, params = _train(config, _fixed_batch(config, 2), Ranks())
    for _, rank_losses, rank_params in results:
        # Both ranks report the mean loss, which is the whole batch's loss.
        assert rank_losses == pytest.approx(losses, rel=1e-5)
        # Averaged gradients: every rank ends with the single process's weights.
        for mine, theirs in zip(rank_params, params):
            torch.testing.assert_close(torch.from_numpy(mine), theirs, rtol=1e-4, atol=1e-6)
    assert losses[-1] < losses[0]  # the steps did train


def _project(tmp_path: Path, **train: object) -> tuple[Path, cfg.ProjectConfig]:
    config = cfg.from_preset(
        "tiny",
        {
            "system": {"num_workers": 0},
            "train": {"validate_every": 0, "seed": 1, "snapshot_every": 0, **train},
        },
    )
    project = tmp_path / "proj"
    raw, labels = synthesize((64, 64, 64), config.data.voxel_size, seed=3)
    write_volume(project / "train" / "v.zarr", raw, labels, config.data.voxel_size)
    return project, config


def _start(run_dir: Path, ranks: int = 2) -> subprocess.Popen[bytes]:
    env = {**os.environ, CPU_RANKS_ENV: str(ranks), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.train", str(run_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(run_dir / "log.txt").open("wb"),
        start_new_session=True,
    )


def _ranks_of(run_dir: Path) -> list[int]:
    """Pids of the rank processes (`--rank` in their command line) of this run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run_dir).encode() in command and b"--rank" in command:
            found.append(int(entry.name))
    return found


def _wait_for(run_dir: Path, predicate: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events, _ = read_events(run_dir / "events.jsonl")
        if predicate(events):
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out; log: {(run_dir / 'log.txt').read_text()[-3000:]}")


@pytest.mark.slow
def test_two_cpu_ranks_train_and_only_rank_0_writes(tmp_path: Path) -> None:
    project, config = _project(tmp_path, iterations=4, checkpoint_every=2)
    run_dir = make_run_dir(project, config)
    child = _start(run_dir)
    assert child.wait(timeout=180) == 0, (run_dir / "log.txt").read_text()[-3000:]
    log = (run_dir / "log.txt").read_text()
    assert "rank 1 of 2 joined" in log and "rank 0 of 2 joined" in log
    # One writer: each step's loss once, each checkpoint once, one result.
    assert [
        e["step"] for e in read_events(run_dir / "events.jsonl")[0] if e.get("name") == "loss"
    ] == [
        1,
        2,
        3,
        4,
    ]
    events, _ = read_events(run_dir / "events.jsonl")
    assert [e["iteration"] for e in events if e["type"] == "checkpoint"] == [2, 4]
    assert sum(e["type"] == "result" for e in events) == 1
    assert [i for i, _ in list_checkpoints(run_dir / "checkpoints")] == [2, 4]
    assert all(v == v for v in read_losses(run_dir))  # finite, not NaN
    assert _ranks_of(run_dir) == []


@pytest.mark.slow
def test_sigterm_to_rank_0_stops_every_rank_with_one_checkpoint(tmp_path: Path) -> None:
    project, config = _project(tmp_path, iterations=100000, checkpoint_every=100000)
    run_dir = make_run_dir(project, config)
    child = _start(run_dir)
    _wait_for(run_dir, lambda ev: any(e.get("name") == "loss" for e in ev))
    assert len(_ranks_of(run_dir)) == 1
    # As the daemon cancels: SIGTERM to rank 0 alone; rank 1 must stop with it.
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=120) == 3
    events, _ = read_events(run_dir / "events.jsonl")
    done = max(e["step"] for e in events if e.get("name") == "loss")
    assert [e["iteration"] for e in events if e["type"] == "checkpoint"] == [done]
    assert [i for i, _ in list_checkpoints(run_dir / "checkpoints")] == [done]
    assert not any(e["type"] == "result" for e in events)  # interrupted, resumable
    assert _ranks_of(run_dir) == []


@pytest.mark.slow
def test_kill_9_of_rank_0_leaves_no_rank(tmp_path: Path) -> None:
    project, config = _project(tmp_path, iterations=100000, checkpoint_every=100000)
    run_dir = make_run_dir(project, config)
    child = _start(run_dir)
    _wait_for(run_dir, lambda ev: any(e.get("name") == "loss" for e in ev))
    assert len(_ranks_of(run_dir)) == 1
    child.kill()
    child.wait()
    deadline = time.monotonic() + 30
    while _ranks_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ranks_of(run_dir) == []


def test_bad_input_is_refused_once_before_any_rank_starts(tmp_path: Path) -> None:
    project, config = _project(tmp_path, iterations=2)
    run_dir = make_run_dir(project, config)
    (project / "train" / "v.zarr").rename(project / "v.zarr")  # no training volume left
    child = _start(run_dir)
    assert child.wait(timeout=120) == 2
    log = (run_dir / "log.txt").read_text()
    assert log.count("error: no training volumes") == 1 and "rank" not in log
    events, _ = read_events(run_dir / "events.jsonl")
    assert [e["type"] for e in events] == ["error"]
