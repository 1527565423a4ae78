"""`lsdctl model import`: bring a trained model of the older LSD scripts into a project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from engine.errors import EngineError, InputError
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import project_option, resolve_project

app = typer.Typer(help="Models from elsewhere: import the older scripts' checkpoints.")


@app.command("import")
@guarded
def import_(
    source: Path = typer.Argument(
        ..., help="Checkpoint of the older PyTorch LSD scripts (model_state_dict inside)."
    ),
    project: str | None = project_option("Project to import the model into"),
    name: str | None = typer.Option(
        None, "--name", help="Name under PROJECT/models/ (default: the file's name)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model of that name."),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"project", "model", "path"} as JSON.'
    ),
) -> None:
    """Convert a catena/older-scripts checkpoint into PROJECT/models/NAME.pt.

    Layer names are mapped onto lsdctl's UNet (MTLSD, LSD or AFF, from the heads); a
    layer that does not map is named and nothing is written. The model must fit the
    project's config (import the scripts' config first: `lsdctl config import`). Then
    predict or fine-tune with it.

    Examples:

      lsdctl config import config_cremi.py --project brain1

      lsdctl model import model_checkpoint_300000 --project brain1 --name cremi_old

      lsdctl predict --project brain1 --checkpoint models/cremi_old.pt

      lsdctl train --project brain1 --init-from models/cremi_old.pt --iterations 20000
    """
    proj = resolve_project(project)
    args = [sys.executable, "-m", "engine.runs.model_import", str(source.absolute())]
    args += [str(proj.path)]
    args += ["--name", name] if name else []
    args += ["--overwrite"] if overwrite else []
    # torch loads in a child process: lsdctl itself stays light.
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines()
        raise InputError(lines[-1] if lines else "the model could not be imported")
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise EngineError(f"model import failed: {tail[0]}")
    target = Path(result.stdout.strip())
    relative = target.relative_to(proj.path) if target.is_relative_to(proj.path) else target
    if as_json:
        typer.echo(json.dumps({"project": proj.name, "model": str(relative), "path": str(target)}))
        return
    typer.echo(f"imported {relative}")
    typer.echo(
        f"next: lsdctl predict --project {proj.name} --checkpoint {relative}, or "
        f"lsdctl train --project {proj.name} --init-from {relative}"
    )
