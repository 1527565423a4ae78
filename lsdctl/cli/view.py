"""`lsdctl view`: look at a run's or a project's results in neuroglancer."""

from __future__ import annotations

import os
import sys

import typer

from lsdctl.cli._guard import guarded
from lsdctl.cli._project import project_option, resolve_project


@guarded
def view(
    run: str | None = typer.Argument(
        None,
        help="A run id (see `lsdctl runs`); default: the project's newest predict, segment "
        "and evaluate runs.",
    ),
    project: str | None = project_option(),
    volume: str | None = typer.Option(
        None, "--volume", help="Which volume's outputs to show (default: the first)."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="The segmentation's agglomeration threshold (default: the one chosen on "
        "validation, else the best one evaluate found).",
    ),
    port: int = typer.Option(
        0, "--port", min=0, max=65535, help="The viewer's port on 127.0.0.1 (0: a free one)."
    ),
) -> None:
    """Show results in a local neuroglancer viewer and print its URL; Ctrl-C stops it.

    Layers, each at its voxel size and offset: raw, labels, pred_lsds (three channels as
    RGB, chosen by sliders), pred_affs (RGB), fragments and the segmentation at one
    threshold. A train run shows its latest snapshot: raw, targets and predictions of one
    training sample. The view opens at the volume's centre.

    Examples:

      lsdctl view                         # inside projects/brain1/: the project is implied

      lsdctl view --project brain1

      lsdctl view --project brain1 segment-20261127-090000-1a2b --threshold 0.6

      lsdctl view --project brain1 train-20261126-114502-3f9a
    """
    from lsdctl.view.plan import plan_view
    from lsdctl.view.viewer import check_port, serve_forever, start_viewer, stop_within

    proj = resolve_project(project)
    check_port(port)
    plan = plan_view(proj.path, run, volume, threshold)
    session = start_viewer(plan, port)
    try:
        for note in plan.notes:
            typer.echo(note)
        typer.echo(f"layers: {', '.join(layer.name for layer in plan.layers)}")
        typer.echo(f"viewer: {session.url}")
        typer.echo("Ctrl-C stops the viewer")
    except KeyboardInterrupt:  # before serving began: stop all the same, quietly
        stopped = stop_within(session, 10.0)
    else:
        stopped = serve_forever(session)
    if not stopped:
        # A server thread that will not stop must not keep the command alive after Ctrl-C.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
