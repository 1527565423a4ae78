"""The blocks of a blockwise task as a grid coloured by state, one z slice beside the next.

The cursor picks a block (keys or a click); the widget posts `BlockSelected` so its
screen can show the block's worker, timing and, for a failed block, the traceback.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widget import Widget

from daemon.schemas import BlockMap as BlockMapData
from daemon.schemas import BlockState, BlockTask
from lsdctl.tui.messages import BlockSelected

STATES = ("pending", "running", "done", "skipped", "failed")
# Skipped blocks (outside the mask) are finished but empty: a light dot, not a full cell.
_GLYPHS = {"pending": "░", "running": "▒", "done": "█", "skipped": "·", "failed": "X"}
_SLICE_GAP = 3


def grid_shape(task: BlockTask) -> tuple[int, int, int]:
    """The task's grid as (z, y, x); a 2D grid is one slice, an unknown one a single row."""
    shape = list(task.shape)
    if not shape:
        last = max((b.index for b in task.blocks), default=-1) + 1
        return 1, 1, max(task.total, last, 1)
    while len(shape) < 3:
        shape.insert(0, 1)
    nz, ny, nx = shape[-3:]
    return max(nz, 1), max(ny, 1), max(nx, 1)


def index_of(position: tuple[int, int, int], shape: tuple[int, int, int]) -> int:
    z, y, x = position
    return (z * shape[1] + y) * shape[2] + x


def position_of(index: int, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    z, rest = divmod(index, shape[1] * shape[2])
    y, x = divmod(rest, shape[2])
    return z, y, x


class BlockMap(Widget, can_focus=True):
    """Every block of one task: pending, running, done, skipped or failed, updating live."""

    DEFAULT_CSS = """
    BlockMap {
        height: 1fr;
        min-height: 4;
    }
    BlockMap > .block-map--pending { color: $text-muted 40%; }
    BlockMap > .block-map--running { color: $warning; }
    BlockMap > .block-map--done { color: $success; }
    BlockMap > .block-map--skipped { color: $success 50%; }
    BlockMap > .block-map--failed { color: $error; text-style: bold; }
    BlockMap > .block-map--cursor { background: $foreground 30%; text-style: bold; }
    BlockMap > .block-map--label { color: $text-muted; }
    BlockMap > .block-map--title { text-style: bold; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "block-map--pending",
        "block-map--running",
        "block-map--done",
        "block-map--skipped",
        "block-map--failed",
        "block-map--cursor",
        "block-map--label",
        "block-map--title",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(0, 0, -1)", "Block left", show=False),
        Binding("right", "move(0, 0, 1)", "Block right", show=False),
        Binding("up", "move(0, -1, 0)", "Block up", show=False),
        Binding("down", "move(0, 1, 0)", "Block down", show=False),
        Binding("left_square_bracket", "move(-1, 0, 0)", "Slice up"),
        Binding("right_square_bracket", "move(1, 0, 0)", "Slice down"),
        Binding("t", "next_task", "Next task"),
        Binding("f", "next_failed", "Next failed"),
    ]

    task_index: reactive[int] = reactive(0)
    cursor: reactive[tuple[int, int, int]] = reactive((0, 0, 0))

    def __init__(self, *, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.tasks: list[BlockTask] = []
        self._states: list[dict[int, BlockState]] = []
        self._hits: dict[tuple[int, int], tuple[int, int, int]] = {}
        self._first_slice = 0

    # ---- data ---------------------------------------------------------------------------
    def update_map(self, data: BlockMapData) -> None:
        """New states from the daemon; the cursor stays on its block."""
        before = self.selected()
        self.tasks = data.tasks
        self._states = [{b.index: b for b in t.blocks} for t in data.tasks]
        if self.task_index >= len(self.tasks):
            self.task_index = 0
        self.refresh()
        if self.selected() != before:
            self._announce()

    @property
    def current_task(self) -> BlockTask | None:
        return self.tasks[self.task_index] if self.tasks else None

    def shape(self) -> tuple[int, int, int]:
        return grid_shape(self.current_task) if self.current_task else (1, 1, 1)

    def selected(self) -> tuple[str, int, BlockState | None] | None:
        task = self.current_task
        if task is None:
            return None
        index = index_of(self.cursor, self.shape())
        return task.task, index, self._states[self.task_index].get(index)

    def select(self, task: str, index: int) -> None:
        names = [t.task for t in self.tasks]
        if task in names:
            self.task_index = names.index(task)
            self.cursor = position_of(index, self.shape())

    # ---- keys ---------------------------------------------------------------------------
    def action_move(self, dz: int, dy: int, dx: int) -> None:
        nz, ny, nx = self.shape()
        z, y, x = self.cursor
        self.cursor = (
            min(max(z + dz, 0), nz - 1),
            min(max(y + dy, 0), ny - 1),
            min(max(x + dx, 0), nx - 1),
        )

    def action_next_task(self) -> None:
        if self.tasks:
            self.task_index = (self.task_index + 1) % len(self.tasks)
            self.cursor = (0, 0, 0)

    def action_next_failed(self) -> None:
        """The next failed block after the cursor, in this task and then the others."""
        if not self.tasks:
            return
        here = index_of(self.cursor, self.shape())
        count = len(self.tasks)
        for step in range(count + 1):
            t = (self.task_index + step) % count
            failed = sorted(i for i, b in self._states[t].items() if b.status == "failed")
            after = [i for i in failed if step > 0 or i > here] or (failed if step == count else [])
            if after:
                self.task_index = t
                self.cursor = position_of(after[0], grid_shape(self.tasks[t]))
                return
        self.notify("no failed block", timeout=2)

    def watch_task_index(self) -> None:
        self._first_slice = 0
        self.refresh()
        self._announce()

    def watch_cursor(self) -> None:
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        chosen = self.selected()
        if chosen is not None:
            task, index, block = chosen
            self.post_message(BlockSelected(task, index, self.cursor, block))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        hit = self._hits.get((offset.y, offset.x))
        if hit is not None:
            self.cursor = hit

    # ---- drawing ------------------------------------------------------------------------
    def render(self) -> Text:
        style = self.get_component_rich_style
        task = self.current_task
        if task is None:
            return Text("no blocks yet", style=style("block-map--label"))
        width, height = self.content_size.width, self.content_size.height
        nz, ny, nx = self.shape()
        states = self._states[self.task_index]
        text = Text(no_wrap=True, overflow="crop")
        more = (
            f"  ({self.task_index + 1}/{len(self.tasks)}, t: next)" if len(self.tasks) > 1 else ""
        )
        text.append(task.task + more, style=style("block-map--title"))
        for state in STATES:
            if state == "skipped" and not task.counts.get(state):
                continue  # only masked runs skip blocks: no legend entry for the others
            text.append(f"  {_GLYPHS[state]} ", style=style(f"block-map--{state}"))
            text.append(f"{state} {task.counts.get(state, 0)}", style=style("block-map--label"))
        cell = 2 if nx * 2 <= max(width, 1) else 1
        slice_width = nx * cell
        per_band = max(1, (width + _SLICE_GAP) // (slice_width + _SLICE_GAP))
        bands = max(1, (height - 1) // (ny + 1))
        visible = per_band * bands
        # Scroll the slices so the cursor's one is shown.
        z = self.cursor[0]
        if z < self._first_slice:
            self._first_slice = z
        elif z >= self._first_slice + visible:
            self._first_slice = z - visible + 1
        self._hits = {}
        line = 1
        for band_start in range(self._first_slice, min(nz, self._first_slice + visible), per_band):
            slices = range(band_start, min(nz, band_start + per_band))
            labels = "".join(
                f"{f'z {s}' if nz > 1 else '':<{slice_width}}"[:slice_width] + " " * _SLICE_GAP
                for s in slices
            )
            text.append("\n" + labels.rstrip(), style=style("block-map--label"))
            line += 1
            styles = {state: style(f"block-map--{state}") for state in STATES}
            cursor = style("block-map--cursor")
            for y in range(ny):
                text.append("\n")
                # One span per run of equal cells: the compositor pays per span.
                run: list[str] = []
                run_style: Style | None = None
                column = 0
                for s in slices:
                    for x in range(nx):
                        block = states.get(index_of((s, y, x), (nz, ny, nx)))
                        status = block.status if block is not None else "pending"
                        glyph = _GLYPHS.get(status, "?") * cell
                        cell_style = styles.get(status, Style())
                        if (s, y, x) == self.cursor:
                            cell_style += cursor
                            if self.has_focus:
                                glyph = "▐▌" if cell == 2 else "▌"
                        if cell_style != run_style and run:
                            text.append("".join(run), style=run_style)
                            run = []
                        run.append(glyph)
                        run_style = cell_style
                        for dx in range(cell):
                            self._hits[(line, column + dx)] = (s, y, x)
                        column += cell
                    if run:
                        text.append("".join(run), style=run_style)
                        run, run_style = [], None
                    text.append(" " * _SLICE_GAP)
                    column += _SLICE_GAP
                line += 1
        hidden = nz - min(nz, self._first_slice + visible) + self._first_slice
        if hidden > 0:
            text.append(
                f"\n{hidden} more slice(s): [ and ] move between them",
                style=style("block-map--label"),
            )
        return text

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
