"""A run's fields as the run tables print them (`lsdctl runs`, `lsdctl run show`):
local times, progress, time left, scores; "-" where there is no value."""

from __future__ import annotations

from datetime import datetime

from daemon.schemas import RunInfo


def local_time(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def progress(run: RunInfo) -> str:
    if run.progress_total:
        return f"{run.progress_done or 0}/{run.progress_total}"
    return "-"


def eta(run: RunInfo) -> str:
    if run.eta_s is None:
        return "-"
    minutes, seconds = divmod(int(run.eta_s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def score(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
