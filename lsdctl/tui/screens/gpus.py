"""GPUs: utilisation and memory with their recent history, temperature, power, processes
and the runs holding each one; says so plainly when there is no NVIDIA GPU."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.markup import escape
from textual.widgets import Footer, Static

from daemon.schemas import GpuReport, RunInfo
from lsdctl.tui.messages import RunSelected
from lsdctl.tui.screens.base import PollingScreen
from lsdctl.tui.widgets import DaemonBanner, GpuPanel, NavBar
from lsdctl.tui.widgets.gpu_panel import HISTORY


@dataclass
class GpuSnapshot:
    report: GpuReport
    running: list[RunInfo]


class GpusScreen(PollingScreen):
    CSS_PATH = "gpus.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_holder", "Open holding run"),
        Binding("down,j", "app.focus_next", "Next GPU", show=False),
        Binding("up,k", "app.focus_previous", "Previous GPU", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="gpus")
        self.utilization: dict[int, deque[float | None]] = {}
        self.memory: dict[int, deque[float | None]] = {}
        self.report: GpuReport | None = None

    def compose(self) -> ComposeResult:
        yield NavBar("gpus")
        yield DaemonBanner()
        yield Static(id="no-gpu")
        yield Grid(id="gpu-grid")
        yield Footer()

    async def fetch(self) -> GpuSnapshot:
        report = await self.client.gpus()
        running = await self.client.runs(state="running", limit=0) if report.gpus else []
        return GpuSnapshot(report, running)

    def apply(self, data: GpuSnapshot) -> None:
        report = self.report = data.report
        none = not report.available or not report.gpus
        self.set_class(none, "-none")
        if none:
            self.query_one("#no-gpu", Static).update(
                "[b]No NVIDIA GPU found[/b]\n\n"
                + escape(report.reason or "the NVIDIA driver reports no GPU")
                + "\n\nRuns use the CPU; runs that require a GPU wait in the queue."
            )
        grid = self.query_one("#gpu-grid", Grid)
        panels = {panel.index: panel for panel in grid.query(GpuPanel)}
        wanted = {gpu.index for gpu in report.gpus}
        for index, panel in panels.items():
            if index not in wanted:
                panel.remove()
        new = [GpuPanel(g.index) for g in report.gpus if g.index not in panels]
        if new:
            grid.mount_all(new)
            panels.update({panel.index: panel for panel in new})
        run_of_pid = {r.pid: r.id for r in data.running if r.pid is not None}
        for gpu in report.gpus:
            util = self.utilization.setdefault(gpu.index, deque(maxlen=HISTORY))
            memory = self.memory.setdefault(gpu.index, deque(maxlen=HISTORY))
            util.append(gpu.utilization_pct)
            memory.append(gpu.memory_used_mb)
            panels[gpu.index].update_gpu(gpu, util, memory, run_of_pid)

    def action_open_holder(self) -> None:
        focused = self.focused
        if not isinstance(focused, GpuPanel) or focused.info is None:
            return
        if not focused.info.held_by:
            self.notify(f"GPU {focused.index} is free", timeout=3)
            return
        self.post_message(RunSelected(focused.info.held_by[0]))
