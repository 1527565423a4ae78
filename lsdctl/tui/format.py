"""Plain text for the TUI's cells and labels: durations, sizes, progress bars, times.

Pure functions (no Textual), so screens and widgets agree and tests can call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from daemon.schemas import RunDetail, RunInfo, ValidationPoint

_BAR_FULL = "█"
_BAR_PARTS = " ▏▎▍▌▋▊▉"


def duration(seconds: float | None) -> str:
    """`1:02:03`, `2:03`, or `-` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def number(value: float | None, digits: int = 4) -> str:
    """A loss or a rate: fixed point when readable, scientific when tiny or huge."""
    if value is None or value != value:
        return "-"
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 10**6):
        return f"{value:.{max(digits - 2, 1)}e}"
    return f"{value:.{digits}f}"


def mebibytes(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1024:
        return f"{value / 1024:.1f} GiB"
    return f"{value:.0f} MiB"


def size(num_bytes: int) -> str:
    step = 1024.0
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < step or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= step
    return f"{value:.1f} GiB"


def metric(run: RunDetail, name: str) -> float | None:
    """The latest value of one of a run's metrics (`data_wait`, ...), None if it has none."""
    return next((m.value for m in run.latest_metrics if m.name == name), None)


def fraction(run: RunInfo) -> float | None:
    """How far the run is, in [0, 1], when it reports progress."""
    if not run.progress_total:
        return None
    return min(max((run.progress_done or 0) / run.progress_total, 0.0), 1.0)


def bar(value: float | None, width: int) -> str:
    """A progress bar of `width` cells with eighth-cell resolution (spaces when unknown)."""
    if value is None:
        return " " * width
    eighths = round(min(max(value, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    text = _BAR_FULL * full + (_BAR_PARTS[part] if part and full < width else "")
    return text.ljust(width)


def local_time(t: datetime | None, with_date: bool = True) -> str:
    if t is None:
        return "-"
    return t.astimezone().strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def gpus(run: RunInfo) -> str:
    if run.gpus:
        return ",".join(str(g) for g in run.gpus)
    if run.gpus_requested and not run.state.terminal:
        return f"({run.gpus_requested})"
    return "-"


def validation(point: ValidationPoint) -> str:
    """A validation point in one phrase: `VOI 0.531 @ 1000 · threshold 0.60`."""
    voi = "-" if point.voi is None else f"{point.voi:.3f}"
    threshold = "-" if point.threshold is None else f"{point.threshold:.2f}"
    return f"VOI {voi} @ {point.step} · threshold {threshold}"


def rate_unit(kind: str) -> str:
    return "it/s" if kind == "train" else "blocks/s"


_SPARKS = " ▁▂▃▄▅▆▇█"


def spark(values: Sequence[float | None], top: float, width: int) -> str:
    """The last `width` values as a one-line sparkline on the fixed scale [0, top]."""
    shown = list(values)[-width:]
    out = []
    for value in shown:
        if value is None or top <= 0:
            out.append(" ")
            continue
        level = round(min(max(value / top, 0.0), 1.0) * (len(_SPARKS) - 1))
        out.append(_SPARKS[max(level, 1)])
    return "".join(out).rjust(width)
