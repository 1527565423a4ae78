"""Training speed settings: train.precision (and the old train.amp), bf16 autocast on the
CPU, the data_wait metric, torch.compile's fallback and system.num_workers = auto."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.contract import read_events
from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.models import build_model
from engine.project import config as cfg
from engine.project.config import ModelType
from engine.train.distributed import Ranks
from engine.train.precision import resolve_precision
from engine.train.train_step import TrainStep
from engine.train.trainer import main as train_main
from tests.engine.train.train_runs import make_run_dir, read_losses

_CPU = torch.device("cpu")


def test_an_old_project_toml_with_amp_loads_as_precision_auto(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before, train = cfg.dump(cfg.from_preset("tiny")).split("[train]")
    # Only train's precision: predict has a precision key of its own.
    text = before + "[train]" + train.replace('precision = "auto"', "amp = true", 1)
    assert "amp = true" in text and "precision" not in text.split("[train]")[1].split("[")[0]
    path = tmp_path / "project.toml"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="engine.project.config"):
        config = cfg.load(path)
    assert config.train.precision == "auto"
    assert "train.amp is deprecated" in caplog.text and "train.precision" in caplog.text
    # Saved again, the file has the new key only, and it loads without a note.
    cfg.save(config, path)
    assert "amp =" not in path.read_text() and 'precision = "auto"' in path.read_text()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engine.project.config"):
        assert cfg.load(path).train.precision == "auto"
    assert "deprecated" not in caplog.text


def test_amp_false_also_loads_and_a_bad_amp_or_precision_is_refused(tmp_path: Path) -> None:
    assert cfg.validate({"train": {"amp": False}}).train.precision == "auto"
    # Both keys: precision wins (it is the one the user set last).
    assert cfg.validate({"train": {"amp": True, "precision": "fp32"}}).train.precision == "fp32"
    with pytest.raises(cfg.InputError, match="amp"):
        cfg.validate({"train": {"amp": "yes"}})
    with pytest.raises(cfg.InputError, match=r"train\.precision"):
        cfg.validate({"train": {"precision": "fp8"}})


def test_auto_precision_is_fp32_on_the_cpu_and_only_fp16_scales() -> None:
    assert resolve_precision("auto", _CPU).name == "fp32"
    assert resolve_precision("bf16", _CPU).dtype == torch.bfloat16
    assert not resolve_precision("bf16", _CPU).scaler().is_enabled()
    assert resolve_precision("fp16", _CPU).scaler().is_enabled()


def test_a_bf16_training_step_runs_on_the_cpu_under_autocast() -> None:
    config = cfg.from_preset("tiny")
    torch.manual_seed(0)
    model = build_model(ModelType.MTLSD, config.model, 3, 3)
    shapes = model.output_shapes(config.model.input_shape)
    seen: list[torch.dtype] = []
    model.unet.register_forward_hook(lambda _m, _i, out: seen.append(out[0].dtype))
    g = torch.Generator().manual_seed(1)
    lsds, affs = shapes["lsds"], shapes["affs"]
    tensors = {
        "raw": torch.rand(1, 1, *config.model.input_shape, generator=g),
        "gt_lsds": torch.rand(1, 10, *lsds, generator=g),
        "lsds_weights": torch.ones(1, 10, *lsds),
        "gt_affs": (torch.rand(1, 3, *affs, generator=g) > 0.5).float(),
        "affs_weights": torch.ones(1, 3, *affs),
    }
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = TrainStep(model, ModelType.MTLSD, optimizer, resolve_precision("bf16", _CPU), Ranks())
    losses = [float(step(tensors)) for _ in range(3)]
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)  # autocast was on
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert losses[-1] < losses[0]


def _project(tmp_path: Path, **train: object) -> tuple[Path, cfg.ProjectConfig]:
    config = cfg.from_preset(
        "tiny",
        {
            "system": {"num_workers": 1, "cache_size": 2},
            "train": {"validate_every": 0, "snapshot_every": 0, **train},
        },
    )
    project = tmp_path / "proj"
    raw, labels = synthesize((64, 64, 64), config.data.voxel_size, seed=3)
    write_volume(project / "train" / "v.zarr", raw, labels, config.data.voxel_size)
    return project, config


@pytest.mark.slow
def test_training_reports_data_wait_and_trains_channels_last_in_bf16(tmp_path: Path) -> None:
    project, config = _project(
        tmp_path, iterations=10, checkpoint_every=10, precision="bf16", channels_last=True
    )
    run_dir = make_run_dir(project, config)
    assert train_main([str(run_dir)]) == 0
    events, _ = read_events(run_dir / "events.jsonl")
    waits = [e for e in events if e["type"] == "metric" and e["name"] == "data_wait"]
    # One per reporting interval (every 10 iterations): a share of that interval.
    assert [e["step"] for e in waits] == [10]
    assert all(0.0 <= e["value"] <= 1.0 for e in waits)
    assert len(read_losses(run_dir)) == 10


def test_num_workers_auto_is_the_usable_cores_shared_among_ranks() -> None:
    system = cfg.validate({}).system
    assert system.num_workers == "auto"
    cores = len(os.sched_getaffinity(0))
    assert system.batch_workers() == cores
    assert system.batch_workers(ranks=cores * 2) == 1  # never none
    assert cfg.validate({"system": {"num_workers": 3}}).system.batch_workers(ranks=2) == 3
    with pytest.raises(cfg.InputError, match="num_workers"):
        cfg.validate({"system": {"num_workers": "many"}})


@pytest.mark.slow
def test_a_failing_torch_compile_warns_and_training_goes_on_without_it(tmp_path: Path) -> None:
    # A real failure: on the CPU, inductor builds C++ kernels with $CXX.
    project, config = _project(tmp_path, iterations=2, checkpoint_every=2, compile=True)
    run_dir = make_run_dir(project, config)
    env = {**os.environ, "CXX": "/bin/false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.train", str(run_dir)],
        cwd=Path(__file__).parents[3],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    events, _ = read_events(run_dir / "events.jsonl")
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("torch.compile failed (")
    assert "training goes on without it" in warnings[0]
    assert len(read_losses(run_dir)) == 2 and events[-1]["type"] == "result"


def test_losses_are_recorded_one_iteration_late_in_order_and_all_of_them() -> None:
    from engine.train.trainer import _LaggedLoss

    recorded: list[tuple[int, float]] = []
    losses = _LaggedLoss(lambda at, value: recorded.append((at, value)))
    losses.push(1, torch.tensor(0.5))
    assert recorded == []  # not read yet: the GPU may still be computing it
    losses.push(2, torch.tensor(0.25))
    assert recorded == [(1, 0.5)]
    losses.flush()
    losses.flush()
    assert recorded == [(1, 0.5), (2, 0.25)] and losses.last == 0.25
