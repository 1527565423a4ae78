"""Check a checkpoint file against a config without importing torch in this process.

engine.runs.resolve answers the daemon and the CLI, which must stay free of torch (the
import contract): the check runs `python -m engine.runs.checkpoints check FILE` in a child
process, which loads the file with weights_only=True and compares its layers with the
model the config builds. Only files named by the user are checked this way; the
checkpoints a train run wrote are known to fit its own config.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.errors import InputError
from engine.project import config as cfg

# Loading torch and a checkpoint of a few hundred MB takes seconds; far longer means a
# stuck child.
_TIMEOUT_S = 120


def check_checkpoint(path: Path, config: cfg.ProjectConfig) -> None:
    """InputError (the child's one line) unless `path` is a checkpoint that fits `config`."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "engine.runs.checkpoints", "check", str(path)],
            input=config.model_dump_json(),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"checking {path} took over {_TIMEOUT_S} s: is it a checkpoint?") from None
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines()
        raise InputError(lines[-1] if lines else f"{path} is not a checkpoint")
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise InputError(f"cannot check checkpoint {path}: {tail[0]}")
