"""Run-directory names: its files, run ids, checkpoint names, the best checkpoint's record."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run-directory file names.
RUN_FILE = "run.toml"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
CHECKPOINTS = "checkpoints"
# CHECKPOINTS/best.json: the checkpoint with the best validation VOI so far (kept whatever
# train.keep_checkpoints says) and the threshold chosen with it, written by engine.train:
# {"iteration", "path", "step", "threshold", "voi_split", "voi_merge", "voi", "arand"}.
BEST_FILE = "best.json"


# Run ids.
RUN_ID_PATTERN = re.compile(r"(?P<kind>[a-z]+)-(?P<stamp>\d{8}-\d{6})-(?P<suffix>[0-9a-f]{4})")


def new_run_id(kind: str) -> str:
    """Sortable by time, unique without coordination: `train-20261126-114502-3f9a`.

    Four random hex digits can collide within one second: a caller that keeps a registry
    (the daemon) draws again while the id is taken.
    """
    return f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def is_run_id(text: str) -> bool:
    """True when `text` has the form `new_run_id` gives."""
    return RUN_ID_PATTERN.fullmatch(text) is not None


# Checkpoint names. At least 8 digits: what `checkpoint_name` writes for any iteration,
# so every name it gives is parsed back (also past 99,999,999 iterations).
CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d{8,})\.pt")


def checkpoint_name(iteration: int) -> str:
    """The file name of the checkpoint of `iteration`: `checkpoint_00001000.pt`."""
    return f"checkpoint_{iteration:08d}.pt"


def checkpoint_iteration(name: str) -> int | None:
    """The iteration a checkpoint file name stands for, or None for any other file
    (temporary files of a checkpoint being written included)."""
    match = CHECKPOINT_PATTERN.fullmatch(name)
    return None if match is None else int(match.group(1))


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every complete checkpoint in `folder`, oldest first ([] for a
    folder that is missing or unreadable)."""
    try:
        paths = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for path in paths:
        iteration = checkpoint_iteration(path.name)
        if iteration is not None:
            found.append((iteration, path))
    return sorted(found)


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """A train run's CHECKPOINTS/BEST_FILE (None when it has none, or an unreadable one)."""
    try:
        data = json.loads((run_dir / CHECKPOINTS / BEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("iteration"), int):
        return None
    return data
