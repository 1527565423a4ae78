"""Helpers of the training tests: a run directory for a config, train it, read its losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.contract import read_events
from engine.project import config as cfg
from engine.runs.spec import RunSpec, write_spec
from engine.train.trainer import main as train_main


def make_run_dir(project: Path, config: cfg.ProjectConfig, name: str = "run") -> Path:
    run_dir = project / "runs" / name
    write_spec(run_dir, RunSpec(id=name, kind="train", project=str(project), config=config))
    return run_dir


def train_loss_drop(run_dir: Path, window: int, label: str) -> tuple[float, float]:
    """Train the run to its end; mean loss over the first and last `window` iterations."""
    assert train_main([str(run_dir)]) == 0
    losses = read_losses(run_dir)
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    print(f"{label}: loss {first:.4f} -> {last:.4f} ({last / first:.2f})")
    return first, last


def read_losses(run_dir: Path) -> list[float]:
    events, _ = read_events(run_dir / "events.jsonl")
    return [e["value"] for e in events if e["type"] == "metric" and e["name"] == "loss"]
