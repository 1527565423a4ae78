"""`lsdctl tui`: the live dashboard (starts the daemon when none is running)."""

from __future__ import annotations

import typer

from engine.project.layout import Project
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import complete_project, context_project, resolve_project, root_in_effect
from lsdctl.client import AsyncDaemonClient, ensure_daemon


@guarded
def tui(
    project: str | None = typer.Option(
        None,
        "--project",
        "-P",
        help="Start with the runs list filtered to this project (default: the project whose "
        "folder you are in, else $LSDCTL_PROJECT, else every project's runs).",
        autocompletion=complete_project,
    ),
    interval: float = typer.Option(
        2.0, "--interval", min=0.2, max=60.0, help="Seconds between refreshes."
    ),
) -> None:
    """Runs, a run's loss and blocks and log, GPUs, projects and their configs, live.

    Keys: 1 Runs, 2 GPUs, 3 Projects, ? every key, q quit. When the daemon stops, a
    banner says so and the dashboard reconnects once it is back. Inside a project's
    folder the runs list starts filtered to that project (Esc clears the filter).

    Examples:

      lsdctl tui

      lsdctl tui --project brain1 --interval 5
    """
    from lsdctl.tui import create_app

    run_filter = _run_filter(project)  # a mistyped --project fails before a daemon starts
    with ensure_daemon() as client:
        home = client.paths.home
    app = create_app(
        AsyncDaemonClient(home, timeout=10.0),
        projects_root=root_in_effect(),
        interval=interval,
        run_filter=run_filter,
    )
    app.run()


def _run_filter(project: str | None) -> str:
    """`project:NAME` for the project named or implied by the context; "" for none."""
    chosen: Project | None = resolve_project(project) if project else context_project()
    return f"project:{chosen.name}" if chosen is not None else ""
