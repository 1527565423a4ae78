"""What every engine entry point (`python -m engine.train|predict|segment|evaluate
RUN_DIR`) does before its run: log to stderr in one format (the launcher sends stderr to
the run's log.txt), and refuse a run directory that is not there with one line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def missing_run_dir(run_dir: Path, required: str | None = None) -> bool:
    """True (after one `error:` line on stderr) when `run_dir`, or the file `required`
    in it, does not exist: the caller then exits with 2."""
    if not run_dir.is_dir():
        sys.stderr.write(f"error: run directory {run_dir} does not exist\n")
        return True
    if required is not None and not (run_dir / required).is_file():
        sys.stderr.write(f"error: {run_dir} is not a run directory ({required} missing)\n")
        return True
    return False
