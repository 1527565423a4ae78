"""`lsdctl tui`: the live dashboard (starts the daemon when none is running)."""

from __future__ import annotations

import typer

from lsdctl.cli._guard import guarded
from lsdctl.client import AsyncDaemonClient, ensure_daemon


@guarded
def tui(
    interval: float = typer.Option(
        2.0, "--interval", min=0.2, max=60.0, help="Seconds between refreshes."
    ),
) -> None:
    """Runs, a run's loss and blocks and log, GPUs, projects and their configs, live.

    Keys: 1 Runs, 2 GPUs, 3 Projects, ? every key, q quit. When the daemon stops, a
    banner says so and the dashboard reconnects once it is back.
    """
    from lsdctl.tui import create_app

    with ensure_daemon() as client:
        home = client.paths.home
    create_app(AsyncDaemonClient(home, timeout=10.0), interval=interval).run()
