"""Checkpoints of a training run: written atomically, the last K kept, the latest found.

A checkpoint is `RUN_DIR/checkpoints/checkpoint_00001000.pt`, a torch file with the
model, optimizer and scheduler states, the iteration and the training stage. It is
written to a temporary file and renamed, so a crash never leaves a torn checkpoint.
The checkpoint with the best validation score is named in `best.json` beside them and
survives rotation.

Every checkpoint is read with `weights_only=True`: tensors, numbers, strings and plain
containers only, so a file carrying a pickle payload (code to run, custom classes) is
refused rather than executed. `python -m engine.runs.checkpoints check FILE` (config JSON on
stdin) checks that a file is a checkpoint whose model fits a config, for callers that
must not import torch (engine.runs.checkpoint_check).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine.contract import BEST_FILE, checkpoint_name, list_checkpoints
from engine.errors import InputError

# The key of the model's state dict in an lsdctl checkpoint.
MODEL_KEY = "model"


def checkpoint_path(folder: Path, iteration: int) -> Path:
    return folder / checkpoint_name(iteration)


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
    from engine.project.config import write_atomic

    write_atomic(folder / BEST_FILE, json.dumps(record, indent=2) + "\n")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`, read with weights_only=True; InputError (one line) for
    a file that is not a torch checkpoint, carries a pickle payload, or holds no model."""
    path = Path(path)
    if not _torch_file(path):
        raise InputError(
            f"{path} is not a torch checkpoint (neither a torch zip file nor a pickle): "
            "give a .pt file written by lsdctl train or `lsdctl model import`"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        if not any("Weights only load failed" in line for line in lines):
            raise InputError(
                f"{path} is not a torch checkpoint ({lines[0] if lines else exc!r})"
            ) from None
        # torch's weights-only unpickler names the global it refused.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it would import and call {found.group(1)}" if found else "not weights only"
        raise InputError(
            f"{path} is refused: it carries pickled objects beyond weights, which loading "
            f"would run ({what}); save its state dict alone, or `lsdctl model import` an "
            "older scripts' checkpoint"
        ) from None
    except Exception as exc:  # torch raises many types for a torn or foreign file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a torch checkpoint ({reason})") from None
    if not isinstance(state, Mapping) or not isinstance(state.get(MODEL_KEY), Mapping):
        keys = ", ".join(sorted(map(str, state))[:6]) if isinstance(state, Mapping) else ""
        hint = (
            ": it looks like an older LSD scripts' checkpoint, convert it with "
            "`lsdctl model import FILE --project P`"
            if isinstance(state, Mapping) and "model_state_dict" in state
            else ""
        )
        raise InputError(
            f"{path} is not an lsdctl checkpoint: it has no '{MODEL_KEY}' state"
            + (f" (its keys: {keys})" if keys else "")
            + hint
        )
    return dict(state)


def _torch_file(path: Path) -> bool:
    """A torch zip file, or the legacy format (a pickle: protocol byte 0x80)."""
    try:
        if zipfile.is_zipfile(path):
            return True
        with path.open("rb") as f:
            return f.read(1) == b"\x80"
    except OSError:
        return False


def check_fits(model: torch.nn.Module, weights: Mapping[str, Any], what: str) -> None:
    """InputError naming the first layer of `weights` (from `what`) that `model` lacks,
    lacks weights for, or holds in another shape."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in weights.items() if hasattr(v, "shape")}
    for name, shape in expected.items():
        if name not in given:
            raise InputError(
                f"{what} does not fit the model: it has no weights for layer {name} "
                f"({list(shape)}){_nearby(given)}; check model.* and train.model_type"
            )
        if given[name] != shape:
            raise InputError(
                f"{what} does not fit the model: layer {name} is {list(given[name])} in the "
                f"checkpoint, the model needs {list(shape)}; check model.* (num_fmaps, "
                "fmap_inc_factor, kernels, downsampling), train.model_type and "
                "train.neighborhood against the checkpoint's"
            )
    extra = sorted(set(given) - set(expected))
    if extra:
        raise InputError(
            f"{what} does not fit the model: the checkpoint has layer {extra[0]} "
            f"({list(given[extra[0]])}) that the model lacks ({len(extra)} such); "
            "check model.* and train.model_type"
        )


def _nearby(given: Mapping[str, Any]) -> str:
    names = sorted(given)[:3]
    return f" (the checkpoint's first layers: {', '.join(names)})" if names else ""


def load_weights(
    path: Path, model: torch.nn.Module, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Load the model weights of the checkpoint at `path` into `model` after checking
    that they fit; returns the checkpoint."""
    state = load_checkpoint(path, device)
    check_fits(model, state[MODEL_KEY], str(path))
    model.load_state_dict(state[MODEL_KEY])
    return state


def check_file(path: Path, config: Any) -> None:
    """InputError unless `path` is a checkpoint whose weights fit the model of `config`
    (an engine.project.config.ProjectConfig); builds the model on the meta device (no memory)."""
    from engine.models import build_model

    state = load_checkpoint(path, "cpu")
    with torch.device("meta"):
        model = build_model(
            config.train.model_type,
            config.model,
            config.data.dims,
            len(config.affinity_neighborhood()),
        )
    check_fits(model, state[MODEL_KEY], str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.runs.checkpoints check FILE`: the project config as JSON on stdin;
    exit 0 if FILE fits it, 2 with one line on stderr if not."""
    from engine.project import config as cfg

    parser = argparse.ArgumentParser(prog="python -m engine.runs.checkpoints")
    parser.add_argument("command", choices=["check"])
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        config = cfg.validate(json.loads(sys.stdin.read() or "{}"), source="config")
        check_file(args.file, config)
    except InputError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
