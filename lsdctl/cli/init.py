"""`lsdctl init`: create a project."""

from __future__ import annotations

import json

import typer

from engine.project import config as cfg
from engine.project.layout import init_project
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import root_in_effect


@guarded
def init(
    name: str = typer.Argument(..., help="Project name: letters, digits, '_', '.', '-'."),
    dataset: str = typer.Option(
        cfg.DEFAULT_PRESET,
        "--dataset",
        "--preset",
        help="Dataset preset (cremi, cremi-paper, snemi, zebrafinch, fib25, tiny, tiny2d) "
        "or a .toml preset file.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Rewrite an existing project's config from the preset (keeps data and runs).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the project's name, path, preset and shapes as JSON."
    ),
) -> None:
    """Create projects/NAME with project.toml, train/, val/, test/ and runs/.

    Inside a project's folder the new project goes beside it (its projects root), not
    into it. Commands run inside projects/NAME/ act on NAME without --project.

    Examples:

      lsdctl init brain1 --dataset cremi

      lsdctl init lab --dataset mylab.toml
    """
    project = init_project(name, preset=dataset, force=force, root=root_in_effect())
    config = project.load_config()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "project": name,
                    "path": str(project.path.absolute()),
                    "preset": config.preset,
                    "voxel_size": config.data.voxel_size,
                    "model_type": config.train.model_type.value,
                    "input_shape": config.model.input_shape,
                    "output_shape": config.model.output_shape,
                },
                indent=2,
            )
        )
        return
    typer.echo(f"created project {name} at {project.path} (preset {config.preset})")
    typer.echo(
        f"  voxel size {config.data.voxel_size} nm, model {config.train.model_type.value}, "
        f"input {config.model.input_shape} -> output {config.model.output_shape}"
    )
    typer.echo("next:")
    typer.echo(f"  lsdctl data import FILE --project {name} --split train")
    typer.echo(f"  lsdctl data synth --project {name}        # or: synthetic EM-like data")
    typer.echo(f"  lsdctl data check --project {name}")
    typer.echo(f"  lsdctl config show --project {name}          # adjust with lsdctl config set")
