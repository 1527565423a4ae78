"""A training run's validation scores over its steps: VOI as a braille line through the
validation points, each point a dot, the best one (lowest VOI) marked and labelled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from daemon.schemas import ValidationPoint
from lsdctl.tui import format as fmt
from lsdctl.tui.widgets.loss_chart import BrailleCanvas, fit_title, value_range

_AXIS_WIDTH = 9  # a 7-wide VOI label and " ┤"
BEST_MARK = "◆"
_POINT = "•"

# (cell x, cell y) → (character, component class) drawn over the line.
Overlay = dict[tuple[int, int], tuple[str, str]]


def place(
    steps: Sequence[int], values: Sequence[float], width: int, height: int
) -> tuple[list[tuple[int, int]], float, float]:
    """Dot coordinates of each (step, value) on a width × height cell canvas, and the
    value range drawn (steps from the first to the last span the width)."""
    low, high = value_range(values)
    first, span_x = steps[0], max(steps[-1] - steps[0], 1)
    dots_x, dots_y = width * 2 - 1, height * 4 - 1
    dots = [
        (round((step - first) / span_x * dots_x), round((high - value) / (high - low) * dots_y))
        for step, value in zip(steps, values)
    ]
    return dots, low, high


class ValidationChart(Widget):
    """`set_points` with the daemon's validation points of a run (all of them, in step
    order); the point flagged `best` is marked with ◆ and labelled."""

    DEFAULT_CSS = """
    ValidationChart {
        height: 1fr;
        min-height: 6;
    }
    ValidationChart > .validation-chart--line { color: $secondary; }
    ValidationChart > .validation-chart--point { color: $secondary; text-style: bold; }
    ValidationChart > .validation-chart--best { color: $warning; text-style: bold; }
    ValidationChart > .validation-chart--axis { color: $text-muted; }
    ValidationChart > .validation-chart--title { color: $text; text-style: bold; }
    ValidationChart > .validation-chart--empty { color: $text-muted; text-style: italic; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "validation-chart--line",
        "validation-chart--point",
        "validation-chart--best",
        "validation-chart--axis",
        "validation-chart--title",
        "validation-chart--empty",
    }

    def __init__(self, *, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self._points: tuple[ValidationPoint, ...] = ()

    def set_points(self, points: Sequence[ValidationPoint]) -> None:
        """Show exactly `points` (a repeated poll with the same points draws nothing)."""
        points = tuple(points)
        if points != self._points:
            self._points = points
            self.refresh()

    @property
    def points(self) -> tuple[ValidationPoint, ...]:
        return self._points

    @property
    def best(self) -> ValidationPoint | None:
        return next((p for p in self._points if p.best), None)

    def title(self) -> str:
        best = self.best
        return f"validation: best {fmt.validation(best)}" if best else "validation: no best yet"

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        style = self.get_component_rich_style
        scored = [p for p in self._points if p.voi is not None]
        if not scored:
            return Text("no validation scores yet", style=style("validation-chart--empty"))
        title = Text(fit_title([self.title()], width), style=style("validation-chart--title"))
        plot_w, plot_h = width - _AXIS_WIDTH, height - 3  # title, x axis and its labels
        if plot_w < 4 or plot_h < 2:
            return title
        steps = [p.step for p in scored]
        values = [p.voi for p in scored if p.voi is not None]
        dots, low, high = place(steps, values, plot_w, plot_h)
        line = BrailleCanvas(plot_w, plot_h)
        line.set(*dots[0])
        for start, end in pairwise(dots):
            line.line(*start, *end)
        overlay: Overlay = {}
        if len(dots) <= plot_w // 3:  # dots of dense points would hide the line
            for x, y in dots:
                overlay[(x // 2, y // 4)] = (_POINT, "validation-chart--point")
        for point, (x, y) in zip(scored, dots):
            if point.best:
                _mark(overlay, point, x // 2, y // 4, plot_w)
        return _compose(title, line, overlay, low, high, steps, style)


def _mark(overlay: Overlay, point: ValidationPoint, cx: int, cy: int, width: int) -> None:
    """◆ on the best point, its VOI and step beside it (left of it near the right edge)."""
    overlay[(cx, cy)] = (BEST_MARK, "validation-chart--best")
    # Padded with a blank on each side, so the line does not run into the text.
    label = f" {point.voi:.3f} @ {point.step} " if point.voi is not None else f" {point.step} "
    start = cx + 1 if cx + 1 + len(label) <= width else cx - len(label)
    for offset, char in enumerate(label):
        if 0 <= start + offset < width:
            overlay[(start + offset, cy)] = (char, "validation-chart--best")


def _compose(
    title: Text,
    line: BrailleCanvas,
    overlay: Overlay,
    low: float,
    high: float,
    steps: Sequence[int],
    style: Callable[[str], Style],
) -> Text:
    axis = style("validation-chart--axis")
    text = Text(no_wrap=True)
    text.append_text(title)
    height = line.height
    for cy in range(height):
        text.append("\n")
        label = ""
        if cy == 0:
            label = f"{high:.3f}"
        elif cy == height - 1:
            label = f"{low:.3f}"
        elif cy == height // 2:
            label = f"{(high + low) / 2:.3f}"
        text.append(f"{label:>{_AXIS_WIDTH - 2}} ┤", style=axis)
        # One span per run of equally styled cells: the compositor pays per span.
        run: list[str] = []
        run_class: str | None = None
        for cx in range(line.width):
            char, cell_class = overlay.get((cx, cy), ("", "validation-chart--line"))
            if not char:
                char = line.char(cx, cy) or " "
            if cell_class != run_class and run:
                text.append("".join(run), style=style(run_class) if run_class else None)
                run = []
            run.append(char)
            run_class = cell_class
        if run:
            text.append("".join(run), style=style(run_class) if run_class else None)
    first, last = str(steps[0]), str(steps[-1])
    gap = max(line.width - len(first) - len(last), 1)
    text.append("\n" + " " * (_AXIS_WIDTH - 2) + " └" + "─" * line.width, style=axis)
    text.append("\n" + " " * _AXIS_WIDTH + first + " " * gap + last, style=axis)
    return text
