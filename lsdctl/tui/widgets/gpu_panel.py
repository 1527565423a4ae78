"""One GPU: utilisation and memory now and as sparklines of their recent history,
temperature, power, its processes, and the runs that hold it."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static

from daemon.schemas import GpuInfo
from lsdctl.tui import format as fmt

# Samples of history shown (and kept by the screen): one per poll.
HISTORY = 48


class GpuPanel(Vertical, can_focus=True):
    """Focus one and press enter to open the run that holds it."""

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        border: round $panel;
        padding: 0 1;
    }
    GpuPanel:focus { border: round $accent; }
    GpuPanel > .gpu-title { text-style: bold; }
    GpuPanel > .gpu-history { color: $accent; }
    GpuPanel > .gpu-note { color: $text-muted; }
    GpuPanel.-held > .gpu-title { color: $warning; }
    """

    def __init__(self, index: int) -> None:
        super().__init__(id=f"gpu-{index}")
        self.index = index
        self.info: GpuInfo | None = None
        self._shown: tuple[Sequence[float | None], Sequence[float | None], dict[int, str]] = (
            [],
            [],
            {},
        )

    def compose(self) -> ComposeResult:
        yield Static(classes="gpu-title", id=f"gpu-{self.index}-title")
        yield Static(id=f"gpu-{self.index}-util")
        yield Static(classes="gpu-history", id=f"gpu-{self.index}-util-history")
        yield Static(id=f"gpu-{self.index}-mem")
        yield Static(classes="gpu-history", id=f"gpu-{self.index}-mem-history")
        yield Static(classes="gpu-note", id=f"gpu-{self.index}-sensors")
        yield Static(classes="gpu-note", id=f"gpu-{self.index}-processes")

    def update_gpu(
        self,
        info: GpuInfo,
        utilization: Sequence[float | None],
        memory: Sequence[float | None],
        run_of_pid: dict[int, str],
    ) -> None:
        """Show `info` and the history (now, or once the panel is mounted)."""
        self.info = info
        self._shown = (list(utilization), list(memory), run_of_pid)
        if self.is_mounted:
            self._show()

    def on_mount(self) -> None:
        if self.info is not None:
            self._show()

    def _show(self) -> None:
        info = self.info
        assert info is not None
        utilization, memory, run_of_pid = self._shown
        i = self.index
        self.set_class(bool(info.held_by), "-held")
        holders = ", ".join(info.held_by) if info.held_by else "free"
        self.query_one(f"#gpu-{i}-title", Static).update(
            escape(f"GPU {info.index} · {info.name} · {holders}")
        )
        util = info.utilization_pct
        share = None if util is None else util / 100
        self.query_one(f"#gpu-{i}-util", Static).update(
            f"util [$accent]{fmt.bar(share, 20)}[/] {'-' if util is None else f'{util:.0f} %'}"
        )
        width = HISTORY
        self.query_one(f"#gpu-{i}-util-history", Static).update(
            "     " + fmt.spark(utilization, 100.0, width)
        )
        used, total = info.memory_used_mb, info.memory_total_mb
        self.query_one(f"#gpu-{i}-mem", Static).update(
            f"mem  [$accent]{fmt.bar(used / total if total else None, 20)}[/] "
            f"{fmt.mebibytes(used)} / {fmt.mebibytes(total)}"
        )
        self.query_one(f"#gpu-{i}-mem-history", Static).update(
            "     " + fmt.spark(memory, total, width)
        )
        temperature = "-" if info.temperature_c is None else f"{info.temperature_c:.0f} °C"
        power = "-" if info.power_w is None else f"{info.power_w:.0f} W"
        self.query_one(f"#gpu-{i}-sensors", Static).update(
            f"temperature {temperature} · power {power}"
        )
        if info.processes:
            listed = ", ".join(
                f"pid {p.pid}"
                + (f" ({run_of_pid[p.pid]})" if p.pid in run_of_pid else "")
                + f" {fmt.mebibytes(p.used_memory_mb)}"
                for p in info.processes
            )
        else:
            listed = "none"
        self.query_one(f"#gpu-{i}-processes", Static).update(escape(f"processes: {listed}"))
