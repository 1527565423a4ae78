"""Checkpoints of a training run: written atomically, the last K kept, the latest found.

A checkpoint is `RUN_DIR/checkpoints/checkpoint_00001000.pt`, a torch file with the
model, optimizer and scheduler states, the iteration and the training stage. It is
written to a temporary file and renamed, so a crash never leaves a torn checkpoint.
The checkpoint with the best validation score is named in `best.json` beside them and
survives rotation.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from engine.rundir import BEST_FILE

_NAME = re.compile(r"checkpoint_(\d{8})\.pt")


def checkpoint_path(folder: Path, iteration: int) -> Path:
    return folder / f"checkpoint_{iteration:08d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every complete checkpoint, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(
    folder: Path, iteration: int, state: dict[str, Any], keep: int, protect: int | None = None
) -> Path:
    """Write the checkpoint of `iteration`; keep the newest `keep` and the one of
    iteration `protect` (the best on validation)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, iteration)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            torch.save({**state, "iteration": iteration}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old_iteration, old in list_checkpoints(folder)[:-keep]:
        if old_iteration != protect:
            old.unlink(missing_ok=True)
    return path


def write_best(folder: Path, record: dict[str, Any]) -> None:
    """best.json, atomically: the best checkpoint and what validation chose with it."""
    from engine.config import write_atomic

    write_atomic(folder / BEST_FILE, json.dumps(record, indent=2) + "\n")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    state: dict[str, Any] = torch.load(path, map_location=device, weights_only=False)
    return state
