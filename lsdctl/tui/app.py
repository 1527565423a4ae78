"""The lsdctl TUI: runs, a run's detail, GPUs, projects and their configs, live.

The app holds the global keys and the modes (Runs, GPUs, Projects: one screen stack
each); every screen polls the daemon through the async client it is given, so tests
can hand it a client of a daemon on a temporary socket (or a fake).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from engine.project.layout import projects_root as default_projects_root
from lsdctl.tui.messages import DaemonLost, DaemonReached, RunSelected
from lsdctl.tui.protocol import TuiClient
from lsdctl.tui.screens import GpusScreen, HelpScreen, ProjectsScreen, RunDetailScreen, RunsScreen
from lsdctl.tui.viewers import Viewers

DEFAULT_INTERVAL_S = 2.0


class LsdctlApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "lsdctl"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "runs": RunsScreen,
        "gpus": GpusScreen,
        "projects": ProjectsScreen,
    }
    DEFAULT_MODE = "runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('runs')", "Runs"),
        Binding("2", "switch_mode('gpus')", "GPUs"),
        Binding("3", "switch_mode('projects')", "Projects"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    daemon_error: reactive[str | None] = reactive(None)

    def __init__(
        self,
        client: TuiClient,
        projects_root: Path | None = None,
        interval: float = DEFAULT_INTERVAL_S,
        run_filter: str = "",
    ) -> None:
        super().__init__()
        self.client = client
        self.projects_root = (projects_root or default_projects_root()).absolute()
        self.interval = interval
        self.viewers = Viewers()  # neuroglancer viewers started with `v`
        # What the runs list starts filtered by (`project:brain1` inside brain1's folder).
        self.run_filter = run_filter

    def on_daemon_lost(self, message: DaemonLost) -> None:
        self.daemon_error = message.reason

    def on_daemon_reached(self, message: DaemonReached) -> None:
        self.daemon_error = None

    def on_run_selected(self, message: RunSelected) -> None:
        self.push_screen(RunDetailScreen(message.run_id, message.tab))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        await self.viewers.close()
        await self.client.aclose()


def create_app(
    client: TuiClient,
    projects_root: Path | None = None,
    interval: float = DEFAULT_INTERVAL_S,
    run_filter: str = "",
) -> LsdctlApp:
    """The app, talking to the daemon only through `client` (polling every `interval` s);
    the runs list starts filtered by `run_filter` (the filter box's syntax; Esc clears it)."""
    return LsdctlApp(client, projects_root=projects_root, interval=interval, run_filter=run_filter)
