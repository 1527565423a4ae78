"""The options `lsdctl predict`, `segment` and `evaluate` share, and what their text becomes.

An option that means the same in the three commands is declared once here, so its name,
default and help read the same in each; the helpers turn its text into the run's inputs
(checked here, so a bad value fails before a daemon starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from engine.blockwise.launchers import executor_names, one_of
from engine.data import region
from engine.errors import InputError
from lsdctl.cli._project import project_option

EXECUTORS = executor_names()

PROJECT = project_option()
LOCAL = typer.Option(False, "--local", help="Run in the foreground, without the daemon.")
DETACH = typer.Option(
    False, "--detach", "-d", help="Queue the run and print its id; do not follow it."
)
JSON = typer.Option(
    False,
    "--json",
    help='Print {"run", "kind", "state"} as JSON (with -d: at once; else with run_dir and '
    "result once the run ends).",
)
WORKERS = typer.Option(
    None, "--workers", min=1, help="Worker processes (default: the project's predict.num_workers)."
)
EXECUTOR = typer.Option(
    None, "--executor", help=f"Where workers run: {one_of(EXECUTORS)} (predict.executor)."
)
ROI = typer.Option(
    None,
    "--roi",
    help="Only this region: z0:z1,y0:y1,x0:x1 in nm (world coordinates, as the volume's "
    "offset), or the same in voxels from the volume's first voxel with a 'vx' suffix, e.g. "
    "0:40,0:512,0:512vx (STOP excluded; default: everything).",
)


def check_executor(executor: str | None) -> None:
    """InputError unless `executor` is None (the config's) or one of EXECUTORS."""
    if executor is not None and executor not in EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")


def roi_input(roi: str | None) -> dict[str, Any]:
    """{"roi": TEXT} once its syntax is right (the resolver places it in each volume)."""
    if roi is None:
        return {}
    region.parse(roi)
    return {"roi": roi}


def pathish(given: str) -> str:
    """A path that exists from here, made absolute (the daemon has another working
    directory); anything else as given, for the resolver to look up in the project."""
    path = Path(given).expanduser()
    return str(path.absolute()) if path.exists() else given
