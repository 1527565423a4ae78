"""Running an engine entry point in the foreground (`--local`), and reporting how runs ended.

The entry point runs as a child in its own session, so torch never loads in this process
and a terminal Ctrl-C reaches only lsdctl, which then asks the run to stop cleanly
(SIGTERM; a second Ctrl-C kills it). SIGTERM and SIGHUP to lsdctl do the same as Ctrl-C,
and so does SIGINT when a shell started lsdctl in the background (which ignores it), and
the child gets SIGTERM from the kernel if lsdctl dies without a word: a foreground run
never outlives the command that shows it. Its events drive a progress bar.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

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

from daemon.schemas import RunDetail, RunState
from engine.contract import EVENTS_FILE, LOG_FILE, read_events
from engine.errors import InputError
from lsdctl.cli._follow import make_progress

EXIT_INTERRUPTED = 3
_POLL_S = 0.3


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _end_with_parent() -> None:
    # In the child, before exec: Linux sends it SIGTERM when lsdctl (the parent thread)
    # dies, even by SIGKILL; the run then stops as after `lsdctl cancel`.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_foreground(
    run_dir: Path,
    module: str,
    label: str,
    args: Sequence[str] = (),
    show_loss: bool = False,
    stopping_note: str = "stopping (Ctrl-C again to kill it)",
) -> int:
    """Run `python -m MODULE RUN_DIR ARGS…`, following its events; returns its exit code."""
    command = [sys.executable, "-m", module, str(run_dir), *args]
    events_path = run_dir / EVENTS_FILE
    # A resumed run already has events: show only the new ones.
    offset = events_path.stat().st_size if events_path.exists() else 0
    with (run_dir / LOG_FILE).open("ab") as log:
        child = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_end_with_parent if sys.platform == "linux" else None,
        )
    main = threading.current_thread() is threading.main_thread()  # signals: main only
    previous = {s: signal.signal(s, _interrupt) for s in _STOP_SIGNALS} if main else {}
    try:
        return _follow_child(child, run_dir, label, show_loss, stopping_note, offset)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _follow_child(
    child: subprocess.Popen[bytes],
    run_dir: Path,
    label: str,
    show_loss: bool,
    stopping_note: str,
    offset: int,
) -> int:
    events_path = run_dir / EVENTS_FILE
    console = Console(stderr=True)
    console.print(f"run {run_dir.name}: log at {run_dir / LOG_FILE}", highlight=False)
    progress = make_progress(console, label) if show_loss else _plain_progress(console, label)
    task = progress.add_task(label, total=None, loss="-", note="")
    stopping = False
    with progress:
        while True:
            try:
                finished = child.poll() is not None
                events, offset = read_events(events_path, offset)
                _update(progress, task, events)
                if finished:
                    break
                time.sleep(_POLL_S)
            except KeyboardInterrupt:
                if not stopping:
                    stopping = True
                    console.print(stopping_note)
                    child.send_signal(signal.SIGTERM)
                else:
                    child.kill()
    return child.wait()


def _plain_progress(console: Console, label: str) -> Progress:
    """The run display without a loss column, for runs that have no loss."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    )


def _update(progress: Progress, task: TaskID, events: list[dict[str, Any]]) -> None:
    for event in events:
        kind = event.get("type")
        if kind == "progress":
            progress.update(task, completed=event["done"], total=event["total"])
        elif kind == "metric" and event.get("name") == "loss" and event.get("value") is not None:
            progress.update(task, completed=event["step"], loss=f"{event['value']:.4f}")
        elif kind == "block" and event.get("status") == "failed":
            progress.update(task, note=f"block {event.get('id')} failed")


def local_outcome(run_dir: Path, code: int, what: str, again: str) -> dict[str, Any]:
    """The result event of a finished --local run; otherwise its error, as the exit to take.

    `what` names the step in messages ("prediction"); `again` is how to continue it.
    """
    events, _ = read_events(run_dir / EVENTS_FILE)
    if code == 0:
        return next((e for e in reversed(events) if e.get("type") == "result"), {})
    if code == EXIT_INTERRUPTED:
        typer.echo(f"interrupted; continue with: {again}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    errors = [e["message"] for e in events if e.get("type") == "error"]
    message = errors[-1] if errors else f"exit code {code}"
    if code == 2:
        raise InputError(message)
    typer.echo(f"error: {what} failed: {message} (see {run_dir / LOG_FILE})", err=True)
    raise typer.Exit(1)


def summary(kind: str, run_id: str, result: dict[str, Any]) -> list[str]:
    """What a succeeded run produced, in a line or two."""
    if kind == "train":
        loss = result.get("final_loss")
        return [
            f"done: run {run_id}, {result.get('iterations')} iterations, last loss "
            f"{loss if loss is None else f'{loss:.4f}'}",
            f"checkpoint: {result.get('checkpoint')}",
        ]
    outputs = [str(p) for p in result.get("outputs") or []]
    if kind == "predict":
        return [f"done: run {run_id}, {len(outputs)} prediction(s)", *outputs]
    if kind == "segment":
        thresholds = ", ".join(f"{t:.2f}" for t in result.get("thresholds") or [])
        return [f"done: run {run_id}, thresholds {thresholds}", *outputs]
    if kind == "evaluate":
        return [
            f"done: run {run_id}, best threshold {result.get('threshold', float('nan')):.2f}: "
            f"voi_split {result.get('voi_split', float('nan')):.4f}, "
            f"voi_merge {result.get('voi_merge', float('nan')):.4f}, "
            f"arand {result.get('arand', float('nan')):.4f}",
            f"metrics: {result.get('metrics')}",
        ]
    return [f"done: run {run_id}"]


def report_run(run: RunDetail, quiet: bool = False) -> None:
    """The end of a followed daemon run: a summary, and the exit code its state implies.

    `quiet` leaves out the success summary (a caller that prints its own, e.g. JSON).
    """
    resume = f"lsdctl resume {run.id}"
    if run.state == RunState.SUCCEEDED:
        result: dict[str, Any] = dict(run.result or {})
        if run.kind == "train":
            result.setdefault("iterations", run.progress_done)
            if not result.get("checkpoint"):
                result["checkpoint"] = run.last_checkpoint
        if not quiet:
            for line in summary(run.kind, run.id, result):
                typer.echo(line)
        return
    where = f" at iteration {run.progress_done}" if run.progress_done is not None else ""
    if run.kind != "train":
        where = f" after {run.progress_done} of {run.progress_total}" if run.progress_total else ""
    if run.state == RunState.INTERRUPTED:
        typer.echo(f"interrupted{where}: {run.reason}. Continue with: {resume}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if run.state == RunState.CANCELLED:
        typer.echo(f"run {run.id} was cancelled{where}; continue with: {resume}", err=True)
        raise typer.Exit(1)
    message = run.error or f"exit code {run.exit_code}"
    if run.exit_code == 2:
        raise InputError(message)
    typer.echo(
        f"error: run {run.id} failed: {message} (see {run.run_dir}/log.txt); "
        f"continue with: {resume}",
        err=True,
    )
    raise typer.Exit(1)


def echo_run_json(
    run_id: str,
    kind: str,
    state: str,
    run_dir: str | Path | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    """`--json` of a command that starts a run: `{"run", "kind", "state"}` when it was
    queued and left (-d); with `run_dir` and `result` once it was followed to its end."""
    out: dict[str, Any] = {"run": run_id, "kind": kind, "state": state}
    if run_dir is not None:
        out["run_dir"] = str(run_dir)
        out["result"] = result
    typer.echo(json.dumps(out, indent=2))
