"""A live loss curve drawn in braille dots: the raw values as a faint band, an
exponentially smoothed line over them, the axes, and the last and lowest values."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

# Braille cell: 2 dots wide, 4 high; bit of each (dx, dy).
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_AXIS_WIDTH = 11


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); weight 0 is none."""
    if weight <= 0:
        return list(values)
    out, last = [], 0.0
    for n, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**n))
    return out


class BrailleCanvas:
    """A width × height grid of character cells, each 2 × 4 dots."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells = [0] * (width * height)

    def set(self, x: int, y: int) -> None:
        if 0 <= x < self.width * 2 and 0 <= y < self.height * 4:
            cell = (y // 4) * self.width + x // 2
            self.cells[cell] |= _DOTS[y % 4][x % 2]

    def line(self, x0: int, y0: int, x1: int, y1: int) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def char(self, cx: int, cy: int) -> str | None:
        bits = self.cells[cy * self.width + cx]
        return chr(0x2800 + bits) if bits else None


def value_range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = abs(high) * 0.1 or 0.5
        return low - pad, high + pad
    return low, high


def plot(
    steps: Sequence[int],
    values: Sequence[float],
    smoothed: Sequence[float],
    width: int,
    height: int,
) -> tuple[BrailleCanvas, BrailleCanvas, float, float]:
    """Canvases of the raw band and of the smoothed line, and the value range drawn."""
    raw, line = BrailleCanvas(width, height), BrailleCanvas(width, height)
    low, high = value_range(values)
    first, last = steps[0], steps[-1]
    span_x, span_y = max(last - first, 1), high - low
    dots_x, dots_y = width * 2 - 1, height * 4 - 1

    def y_of(value: float) -> int:
        return round((high - value) / span_y * dots_y)

    columns: dict[int, tuple[float, float, float, int]] = {}
    for step, value, smooth in zip(steps, values, smoothed):
        x = round((step - first) / span_x * dots_x)
        lo, hi, total, count = columns.get(x, (value, value, 0.0, 0))
        columns[x] = (min(lo, value), max(hi, value), total + smooth, count + 1)
    previous: tuple[int, int] | None = None
    for x in sorted(columns):
        lo, hi, total, count = columns[x]
        raw.line(x, y_of(hi), x, y_of(lo))
        point = (x, y_of(total / count))
        if previous is None:
            line.set(*point)
        else:
            line.line(*previous, *point)
        previous = point
    return raw, line, low, high


class LossChart(Widget):
    """The loss of a run over its steps; `+`/`-` on the screen change `smoothing`."""

    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 6;
    }
    LossChart > .loss-chart--raw { color: $primary-lighten-2 70%; }
    LossChart > .loss-chart--line { color: $accent; text-style: bold; }
    LossChart > .loss-chart--axis { color: $text-muted; }
    LossChart > .loss-chart--title { color: $text; text-style: bold; }
    LossChart > .loss-chart--empty { color: $text-muted; text-style: italic; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "loss-chart--raw",
        "loss-chart--line",
        "loss-chart--axis",
        "loss-chart--title",
        "loss-chart--empty",
    }

    smoothing: reactive[float] = reactive(0.6)

    def __init__(
        self, metric: str = "loss", *, name: str | None = None, id: str | None = None
    ) -> None:
        super().__init__(name=name, id=id)
        self.metric = metric
        self._points: dict[int, float] = {}

    def validate_smoothing(self, value: float) -> float:
        return round(min(max(value, 0.0), 0.99), 2)

    def set_points(self, points: Sequence[tuple[int, float | None]]) -> None:
        """Add (step, value) points; a step seen again (a resumed attempt) is replaced."""
        changed = False
        for step, value in points:
            if value is not None and math.isfinite(value) and self._points.get(step) != value:
                self._points[step] = value
                changed = True
        if changed:
            self.refresh()

    def clear(self) -> None:
        self._points.clear()
        self.refresh()

    @property
    def count(self) -> int:
        return len(self._points)

    def summary(self) -> tuple[float, float, int] | None:
        """(last value, lowest value, step of the lowest), or None without points."""
        if not self._points:
            return None
        steps = sorted(self._points)
        best = min(steps, key=lambda s: self._points[s])
        return self._points[steps[-1]], self._points[best], best

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        style = self.get_component_rich_style
        summary = self.summary()
        if summary is None:
            return Text(f"no {self.metric} values yet", style=style("loss-chart--empty"))
        steps = sorted(self._points)
        values = [self._points[s] for s in steps]
        smoothed = ema(values, self.smoothing)
        last, lowest, best = summary
        parts = [
            self.metric,
            f"last {_fmt(last)}",
            f"smoothed {_fmt(smoothed[-1])}",
            f"min {_fmt(lowest)} @ {best}",
            f"smoothing {self.smoothing:.2f}",
            f"{len(values)} points",
        ]
        title = Text(fit_title(parts, width, drop=(5, 2)), style=style("loss-chart--title"))
        plot_w, plot_h = width - _AXIS_WIDTH, height - 3  # title, x axis and its labels
        if plot_w < 4 or plot_h < 2:
            return title
        raw, line, low, high = plot(steps, values, smoothed, plot_w, plot_h)
        return _compose(title, raw, line, low, high, steps, style)


def fit_title(parts: Sequence[str], width: int, drop: Sequence[int] = ()) -> str:
    """`parts` two spaces apart in `width` cells: the parts at the indices in `drop` go
    first, in that order, then the end is cut (a wrapped title would push the plot down
    when the chart shares its row with another)."""
    kept = list(range(len(parts)))
    for index in drop:
        if len("  ".join(parts[i] for i in kept)) <= width:
            break
        kept.remove(index)
    text = "  ".join(parts[i] for i in kept)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _fmt(value: float) -> str:
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


def _compose(
    title: Text,
    raw: BrailleCanvas,
    line: BrailleCanvas,
    low: float,
    high: float,
    steps: Sequence[int],
    style: Callable[[str], Style],
) -> Text:
    axis, raw_style, line_style = (
        style("loss-chart--axis"),
        style("loss-chart--raw"),
        style("loss-chart--line"),
    )
    text = Text(no_wrap=True)
    text.append_text(title)
    height = raw.height
    for cy in range(height):
        text.append("\n")
        label = ""
        if cy == 0:
            label = _fmt(high)
        elif cy == height - 1:
            label = _fmt(low)
        elif cy == height // 2:
            label = _fmt((high + low) / 2)
        text.append(f"{label:>{_AXIS_WIDTH - 2}} ┤", style=axis)
        # One span per run of equally styled cells: the compositor pays per span.
        run: list[str] = []
        run_style: Style | None = None
        for cx in range(raw.width):
            cell = cy * raw.width + cx
            if line.cells[cell]:
                char, style_now = chr(0x2800 + (line.cells[cell] | raw.cells[cell])), line_style
            elif raw.cells[cell]:
                char, style_now = chr(0x2800 + raw.cells[cell]), raw_style
            else:
                char, style_now = " ", None
            if style_now != run_style and run:
                text.append("".join(run), style=run_style)
                run = []
            run.append(char)
            run_style = style_now
        if run:
            text.append("".join(run), style=run_style)
    first, last = str(steps[0]), str(steps[-1])
    gap = max(raw.width - len(first) - len(last), 1)
    text.append("\n" + " " * (_AXIS_WIDTH - 2) + " └" + "─" * raw.width, style=axis)
    text.append("\n" + " " * _AXIS_WIDTH + first + " " * gap + last, style=axis)
    return text
