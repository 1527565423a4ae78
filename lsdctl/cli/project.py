"""`lsdctl init`: create a project."""

from __future__ import annotations

import typer

from engine import config as cfg
from engine.project import init_project
from lsdctl.cli._guard import guarded


@guarded
def init(
    name: str = typer.Argument(..., help="Project name: letters, digits, '_', '.', '-'."),
    preset: str = typer.Option(
        cfg.DEFAULT_PRESET,
        "--preset",
        "--dataset",
        "-p",
        help="Dataset preset (cremi, snemi, zebrafinch, fib25, tiny, tiny2d) "
        "or a .toml preset file.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Rewrite an existing project's config from the preset (keeps data and runs).",
    ),
) -> None:
    """Create projects/NAME with project.toml, train/, val/, test/ and runs/."""
    project = init_project(name, preset=preset, force=force)
    config = project.load_config()
    typer.echo(f"created project {name} at {project.path} (preset {config.preset})")
    typer.echo(
        f"  voxel size {config.data.voxel_size} nm, model {config.train.model_type.value}, "
        f"input {config.model.input_shape} -> output {config.model.output_shape}"
    )
    typer.echo("next:")
    typer.echo(f"  lsdctl data import FILE --project {name} --split train")
    typer.echo(f"  lsdctl data synth --project {name}        # or: synthetic EM-like data")
    typer.echo(f"  lsdctl data check --project {name}")
    typer.echo(
        f"  lsdctl config show {name}                              # adjust with lsdctl config set"
    )
