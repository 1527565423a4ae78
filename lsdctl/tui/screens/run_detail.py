"""One run: progress, throughput and ETA; its loss curve and validation curve (train) or
block map (predict, segment); a live log tail; the resolved config; the checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import tomlkit
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from daemon.schemas import BlockMap as BlockMapData
from daemon.schemas import Checkpoints, LogChunk, RunDetail, RunState
from lsdctl.errors import UsageError
from lsdctl.tui import format as fmt
from lsdctl.tui.messages import BlockSelected
from lsdctl.tui.screens.base import RunActionsScreen
from lsdctl.tui.widgets import (
    BlockMap,
    DaemonBanner,
    LogTail,
    LossChart,
    NavBar,
    ValidationChart,
)

BLOCKWISE = ("predict", "segment")
TABS = ("overview", "log", "config", "checkpoints")
# Log chunks (256 KiB each) read per refresh: a long log catches up over a few.
_LOG_CHUNKS = 8


@dataclass
class RunSnapshot:
    run: RunDetail
    points: list[tuple[int, float | None]]
    blocks: BlockMapData | None
    log: list[LogChunk]
    checkpoints: Checkpoints | None


def config_text(config: dict[str, Any]) -> str:
    """The resolved config as TOML (unset values left out, as in project.toml)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        return value

    return tomlkit.dumps(plain(config)) if config else "(no config recorded)"


class RunDetailScreen(RunActionsScreen):
    CSS_PATH = "run_detail.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("o", "tab('overview')", "Overview"),
        Binding("l", "tab('log')", "Log"),
        Binding("C", "tab('config')", "Config"),
        Binding("K", "tab('checkpoints')", "Checkpoints"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("r", "resume_run", "Resume"),
        Binding("v", "view_run", "View"),
        Binding("plus,equals_sign", "smoothing(0.1)", "Smoother"),
        Binding("minus", "smoothing(-0.1)", "Rougher"),
    ]

    def __init__(self, run_id: str, tab: str = "overview") -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab if tab in TABS else "overview"
        self.detail: RunDetail | None = None
        self._last_step: int | None = None
        self._log_offset = 0
        self._checkpoints: list[tuple[int, str, bool]] = []

    def compose(self) -> ComposeResult:
        yield NavBar("runs", title=self.run_id)
        yield DaemonBanner()
        yield Static("loading…", id="summary")
        with TabbedContent(initial=self.initial_tab, id="tabs"):
            with TabPane("Overview", id="overview"):
                with Horizontal(id="charts"):
                    yield LossChart(id="loss")
                    yield ValidationChart(id="validation")
                    yield BlockMap(id="blocks")
                    with VerticalScroll(id="block-info-box"):
                        yield Static("select a block", id="block-info")
                    yield Static(id="result")
                yield LogTail(id="log-tail")
            with TabPane("Log", id="log"):
                yield LogTail(id="full-log")
            with TabPane("Config", id="config"):
                with VerticalScroll():
                    yield Static("loading…", id="config-text")
            with TabPane("Checkpoints", id="checkpoints"):
                yield DataTable(id="checkpoint-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#checkpoint-table", DataTable)
        for label, width in (
            ("ITERATION", 10),
            ("FILE", 28),
            ("SIZE", 10),
            ("WRITTEN", 16),
            ("BEST", 4),
        ):
            table.add_column(label, key=label.lower(), width=width)

    # ---- polling --------------------------------------------------------------------------
    async def fetch(self) -> RunSnapshot:
        client = self.client
        run = await client.run(self.run_id)
        points: list[tuple[int, float | None]] = []
        if run.kind == "train" or any(m.name == "loss" for m in run.latest_metrics):
            metrics = await client.metrics(self.run_id, name="loss", since_step=self._last_step)
            points = [(p.step, p.value) for p in metrics.points]
        blocks = await client.blocks(self.run_id) if run.kind in BLOCKWISE else None
        chunks, offset = [], self._log_offset
        for _ in range(_LOG_CHUNKS):
            chunk = await client.log(self.run_id, offset)
            chunks.append(chunk)
            if chunk.next_offset == offset or chunk.finished:
                break
            offset = chunk.next_offset
        checkpoints = await client.checkpoints(self.run_id) if run.kind == "train" else None
        return RunSnapshot(run, points, blocks, chunks, checkpoints)

    def apply(self, data: RunSnapshot) -> None:
        first = self.detail is None
        self.detail = run = data.run
        for kind in ("train", "blockwise", "other"):
            self.set_class(kind == _family(run.kind), f"-{kind}")
        self._summary(run)
        # Training runs that validate: the curve appears with their first point.
        self.set_class(bool(run.validation), "-validated")
        if run.validation:
            self.query_one(ValidationChart).set_points(run.validation)
        if data.points:
            self.query_one(LossChart).set_points(data.points)
            self._last_step = max(step for step, _ in data.points)
        if data.blocks is not None:
            self.query_one(BlockMap).update_map(data.blocks)
        for chunk in data.log:
            if chunk.text:
                self.query_one("#log-tail", LogTail).append(chunk.text, chunk.next_offset)
                self.query_one("#full-log", LogTail).append(chunk.text, chunk.next_offset)
            self._log_offset = chunk.next_offset
        if data.checkpoints is not None:
            self._show_checkpoints(data.checkpoints)
        if first:
            self.query_one("#config-text", Static).update(escape(self._config(run)))
            if _family(run.kind) == "blockwise" and self.initial_tab == "overview":
                # Once the class above has made it visible (hidden widgets take no focus).
                self.call_after_refresh(self.query_one(BlockMap).focus)
        result = json.dumps(run.result, indent=2) if run.result else "no result yet"
        self.query_one("#result", Static).update(escape(result))

    def refused(self, error: UsageError) -> None:
        self.query_one("#summary", Static).update(escape(str(error)))

    def _summary(self, run: RunDetail) -> None:
        share = fmt.fraction(run)
        progress = "-"
        if share is not None:
            progress = (
                f"[$accent]{fmt.bar(share, 30)}[/] {share:4.0%}  "
                f"{run.progress_done or 0}/{run.progress_total}"
            )
        rate = "-" if run.rate is None else f"{run.rate:.3g} {fmt.rate_unit(run.kind)}"
        best = run.best_validation
        # Beside the loss: how much of the time the trainer waited for batches.
        wait = fmt.metric(run, "data_wait")
        lines = [
            f"[b]{escape(run.id)}[/b]  {run.kind} · project {escape(run.project)} · "
            f"[b]{run.state.value}[/b] · attempt {run.attempts} · GPUs {fmt.gpus(run)} · "
            f"started {fmt.local_time(run.started)}",
            f"{progress}  ETA {fmt.duration(run.eta_s)}  throughput {rate}  "
            f"loss {fmt.number(run.latest_loss)}"
            + (f" @ {run.latest_step}" if run.latest_step is not None else "")
            + (f"  data wait {wait:.0%}" if wait is not None else "")
            + (f"  best VOI {fmt.number(best.voi, 3)} @ {best.step}" if best else ""),
        ]
        note = run.error if run.state == RunState.FAILED and run.error else run.reason
        if note and run.state != RunState.SUCCEEDED:
            lines.append(escape(note.splitlines()[0]))
        self.query_one("#summary", Static).update("\n".join(lines))

    def _config(self, run: RunDetail) -> str:
        parts = [config_text(run.config)]
        if run.inputs:
            parts.append("# inputs\n" + config_text({"inputs": run.inputs}))
        if run.overrides:
            parts.append("# overrides given at submit\n" + json.dumps(run.overrides, indent=2))
        return "\n".join(parts)

    def _show_checkpoints(self, listed: Checkpoints) -> None:
        rows = [(c.iteration, c.path, c.best) for c in listed.checkpoints]
        if rows == self._checkpoints:
            return
        self._checkpoints = rows
        table = self.query_one("#checkpoint-table", DataTable)
        table.clear()
        for c in reversed(listed.checkpoints):
            table.add_row(
                str(c.iteration),
                c.path.rsplit("/", 1)[-1],
                fmt.size(c.size_bytes),
                fmt.local_time(c.modified),
                "◆" if c.best else "",
                key=c.path,
            )

    @on(BlockSelected)
    def _block_selected(self, event: BlockSelected) -> None:
        where = " ".join(f"{axis}{v}" for axis, v in zip("zyx", event.grid))
        block = event.block
        head = f"[b]{escape(event.task)}:{event.index}[/b] · grid {where}"
        if block is None:
            text = f"{head}\npending"
        else:
            text = f"{head}\n[b]{block.status}[/b] · worker {escape(str(block.worker))}"
            if block.seconds is not None:
                text += f" · {block.seconds:.2f} s"
            if block.error:
                text += f"\n\n[$error]{escape(block.error)}[/]"
        self.query_one("#block-info", Static).update(text)

    # ---- actions --------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_smoothing(self, delta: float) -> None:
        chart = self.query_one(LossChart)
        chart.smoothing = chart.smoothing + delta

    def action_cancel_run(self) -> None:
        if self.detail is not None:
            self.cancel_run(self.detail)

    def action_view_run(self) -> None:
        if self.detail is not None:
            self.view_run(self.detail)

    def action_resume_run(self) -> None:
        if self.detail is not None:
            self.resume_run(self.detail)


def _family(kind: str) -> str:
    if kind == "train":
        return "train"
    return "blockwise" if kind in BLOCKWISE else "other"
