"""`lsdctl demo`: the whole chain on built-in synthetic data, reusing what is done."""

from __future__ import annotations

import typer

from engine.errors import InputError
from engine.project import Project, init_project, projects_root
from lsdctl.cli import data as data_cli
from lsdctl.cli._guard import guarded


@guarded
def demo(
    name: str = typer.Option("demo", "--name", help="Project to create or reuse."),
) -> None:
    """Create a `tiny` project with synthetic train and test volumes, and check them.

    Running it again reuses the project and volumes that already exist.
    """
    typer.echo(f"[1/3] project {name} in {projects_root()}")
    try:
        project = Project.open(name)
        typer.echo("      exists: reusing it")
    except InputError:
        project = init_project(name, preset="tiny")
        typer.echo("      created from the tiny preset")
    typer.echo("[2/3] synthetic volumes")
    for split in ("train", "test"):
        if project.volumes(split):
            typer.echo(f"      {split}: {len(project.volumes(split))} volume(s) present: reusing")
        else:
            data_cli.synth(
                project=name, split=split, shape=None, seed=None, name=None, overwrite=False
            )
    typer.echo("[3/3] data check")
    data_cli.check(project=name, as_json=False)
    typer.echo(
        f"\ndone: {project.path}. Next: `lsdctl train --project {name}` trains an MTLSD model "
        f"on it (`lsdctl runs` lists the runs); prediction, segmentation and evaluation join "
        "this demo as they land (see README)."
    )
