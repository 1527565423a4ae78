"""The TUI's screens, one module each with its own .tcss layout."""

from __future__ import annotations

from lsdctl.tui.screens.config_editor import ConfigEditorScreen
from lsdctl.tui.screens.gpus import GpusScreen
from lsdctl.tui.screens.help import HelpScreen
from lsdctl.tui.screens.projects import ProjectsScreen
from lsdctl.tui.screens.run_detail import RunDetailScreen
from lsdctl.tui.screens.runs import RunsScreen

__all__ = [
    "ConfigEditorScreen",
    "GpusScreen",
    "HelpScreen",
    "ProjectsScreen",
    "RunDetailScreen",
    "RunsScreen",
]
