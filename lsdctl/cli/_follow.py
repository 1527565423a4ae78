"""Following a daemon run in the terminal: a progress bar with the latest loss and ETA.

Ctrl-C detaches (the run goes on in the daemon) and says how to follow it again.
"""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from daemon.schemas import RunDetail, RunInfo, RunState
from lsdctl.client import DaemonClient

_POLL_S = 0.5


def make_progress(console: Console, label: str = "training") -> Progress:
    """The columns every run display uses: what, bar, done/total, loss (training only),
    time left."""
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if label == "training":
        columns.append(TextColumn("loss {task.fields[loss]}"))
    return Progress(
        *columns,
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    )


def show(progress: Progress, task: TaskID, run: RunInfo) -> None:
    loss = f"{run.latest_loss:.4f}" if run.latest_loss is not None else "-"
    note = "" if run.state == RunState.RUNNING else (run.reason or run.state.value)
    progress.update(
        task,
        completed=run.progress_done or run.latest_step or 0,
        total=run.progress_total,
        loss=loss,
        note=note[:60],
    )


def detached_message(run_id: str) -> str:
    return (
        f"detached; run {run_id} goes on in the daemon. Follow again with "
        f"`lsdctl logs {run_id} -f` / `lsdctl run show {run_id}`"
    )


def follow(client: DaemonClient, run: RunInfo, label: str) -> RunDetail | None:
    """Show `run` until it stops; None when the user detached with Ctrl-C."""
    console = Console(stderr=True)
    progress = make_progress(console, label)
    task = progress.add_task(label, total=None, loss="-", note="")
    try:  # from the first line on: a Ctrl-C right after it detaches too
        console.print(
            f"run {run.id}: {run.state.value}; log at {run.run_dir}/log.txt", highlight=False
        )
        with progress:
            while True:
                detail = client.run(run.id)
                show(progress, task, detail)
                if detail.state.terminal:
                    return detail
                time.sleep(_POLL_S)
    except KeyboardInterrupt:
        typer.echo(detached_message(run.id), err=True)
        return None
