"""The TUI's widgets, each with its own DEFAULT_CSS."""

from __future__ import annotations

from lsdctl.tui.widgets.banner import DaemonBanner
from lsdctl.tui.widgets.block_map import BlockMap
from lsdctl.tui.widgets.config_form import ConfigForm
from lsdctl.tui.widgets.gpu_panel import GpuPanel
from lsdctl.tui.widgets.log_tail import LogTail
from lsdctl.tui.widgets.loss_chart import LossChart
from lsdctl.tui.widgets.nav_bar import NavBar
from lsdctl.tui.widgets.run_table import RunTable
from lsdctl.tui.widgets.validation_chart import ValidationChart

__all__ = [
    "BlockMap",
    "ConfigForm",
    "DaemonBanner",
    "GpuPanel",
    "LogTail",
    "LossChart",
    "NavBar",
    "RunTable",
    "ValidationChart",
]
