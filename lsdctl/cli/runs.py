"""`lsdctl runs`, `run show|release`, `logs`, `cancel`, `resume`: the daemon's runs."""

from __future__ import annotations

import json
import time
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from daemon.schemas import RunDetail, RunInfo, RunState, ValidationPoint
from lsdctl.cli._follow import follow
from lsdctl.cli._foreground import echo_run_json
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import complete_project, context_project
from lsdctl.cli.train import report_run
from lsdctl.client import ensure_daemon

run_app = typer.Typer(help="One run: `lsdctl run show ID`, `lsdctl run release ID`.")

_ID = typer.Argument(..., help="Run id, e.g. train-20261126-114502-3f9a (see `lsdctl runs`).")
_STATES = ", ".join(s.value for s in RunState)
_JSON = typer.Option(False, "--json", help='Print {"run", "kind", "state"} as JSON.')


def _local(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _progress(run: RunInfo) -> str:
    if run.progress_total:
        return f"{run.progress_done or 0}/{run.progress_total}"
    return "-"


def _eta(run: RunInfo) -> str:
    if run.eta_s is None:
        return "-"
    minutes, seconds = divmod(int(run.eta_s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _score(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _best(run: RunInfo) -> str:
    """The best validation as `VOI @STEP`; blank for runs never validated."""
    best = run.best_validation
    return "" if best is None else f"{_score(best.voi)} @{best.step}"


@guarded
def runs(
    project: str | None = typer.Option(
        None,
        "--project",
        "-P",
        help="Only this project (default: the project whose folder you are in, else "
        "$LSDCTL_PROJECT, else every project).",
        autocompletion=complete_project,
    ),
    every: bool = typer.Option(
        False, "--all", help="Every project's runs, even inside a project's folder."
    ),
    state: str | None = typer.Option(None, "--state", help=f"Only runs in this state: {_STATES}."),
    kind: str | None = typer.Option(None, "--kind", help="train, predict, segment or evaluate."),
    limit: int = typer.Option(50, "--limit", min=0, help="At most this many (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list, newest first."),
) -> None:
    """List runs, newest first: state, progress, loss and why a queued run waits.

    Inside a project's folder (or with $LSDCTL_PROJECT set) only that project's runs,
    as `git log` shows one repository's history; --all lists every project's.

    Examples:

      lsdctl runs

      lsdctl runs --all --state running

      lsdctl runs --project brain1 --kind train --json
    """
    if state is not None and state not in {s.value for s in RunState}:
        raise typer.BadParameter(f"unknown state {state!r}: use one of {_STATES}")
    if every and project is not None:
        raise typer.BadParameter("--all and --project contradict each other: give one")
    if project is None and not every:
        implied = context_project()
        project = implied.name if implied is not None else None
        if project is not None and not as_json:
            typer.echo(f"runs of {project} (implied here); --all lists every project's", err=True)
    with ensure_daemon() as client:
        listed = client.runs(project=project, state=state, kind=kind, limit=limit)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in listed], indent=2))
        return
    if not listed:
        typer.echo("no runs yet: `lsdctl train --project NAME` starts one")
        return
    table = Table(box=None, pad_edge=False)
    for name in (
        "ID",
        "PROJECT",
        "STATE",
        "PROGRESS",
        "LOSS",
        "BEST VAL",
        "ETA",
        "CREATED",
        "NOTE",
    ):
        table.add_column(name, no_wrap=name != "NOTE", overflow="fold")
    for run in listed:
        table.add_row(
            run.id,
            run.project,
            run.state.value,
            _progress(run),
            f"{run.latest_loss:.4f}" if run.latest_loss is not None else "-",
            _best(run),
            _eta(run),
            _local(run.created),
            run.reason if run.state != RunState.SUCCEEDED else "",
        )
    Console(width=200 if not Console().is_terminal else None).print(table)


@run_app.command("show")
@guarded
def show(
    run_id: str = _ID,
    as_json: bool = typer.Option(False, "--json", help="Everything, as JSON."),
) -> None:
    """A run's state, config changes, attempts and latest metrics.

    Examples:

      lsdctl run show train-20261126-114502-3f9a

      lsdctl run show train-20261126-114502-3f9a --json
    """
    with ensure_daemon() as client:
        run = client.run(run_id)
    if as_json:
        typer.echo(json.dumps(run.model_dump(mode="json"), indent=2))
        return
    _print_detail(run)
    if run.validation:
        _print_validation(run.validation)


def _print_validation(points: list[ValidationPoint]) -> None:
    """Every validation point; the best (lowest VOI) marked with `*` and in bold."""
    typer.echo("")
    table = Table(box=None, pad_edge=False, title="validation", title_justify="left")
    for name in ("", "STEP", "VOI SPLIT", "VOI MERGE", "VOI", "ARAND", "THRESHOLD", "SECONDS"):
        table.add_column(name, justify="left" if not name else "right", no_wrap=True)
    for point in points:
        table.add_row(
            "*" if point.best else "",
            str(point.step),
            _score(point.voi_split),
            _score(point.voi_merge),
            _score(point.voi),
            _score(point.arand),
            _score(point.threshold, 2),
            "-" if point.seconds is None else f"{point.seconds:.1f}",
            style="bold" if point.best else None,
        )
    Console(width=200 if not Console().is_terminal else None).print(table)


def _print_detail(run: RunDetail) -> None:
    rows = [
        ("run", run.id),
        ("project", f"{run.project} ({run.project_path})"),
        ("kind", run.kind),
        ("state", run.state.value + (f": {run.reason}" if run.reason else "")),
        ("progress", _progress(run) + (f", eta {_eta(run)}" if run.eta_s is not None else "")),
        ("loss", f"{run.latest_loss:.4f} at step {run.latest_step}" if run.latest_loss else "-"),
        ("gpus", ",".join(map(str, run.gpus)) or "none (CPU)"),
        ("created", _local(run.created)),
        ("started", _local(run.started)),
        ("finished", _local(run.finished)),
        ("attempts", str(run.attempts)),
        ("pid", str(run.pid) if run.pid else "-"),
        ("run dir", run.run_dir),
        ("checkpoint", run.last_checkpoint or "-"),
    ]
    best = run.best_validation
    if best is not None:
        rows.append(
            (
                "best val",
                f"VOI {_score(best.voi)} at step {best.step}, threshold "
                f"{_score(best.threshold, 2)} (split {_score(best.voi_split)}, merge "
                f"{_score(best.voi_merge)}, ARAND {_score(best.arand)})",
            )
        )
    if run.error:
        rows.append(("error", run.error))
    if run.after:
        rows.append(("after", ", ".join(run.after)))
    if run.overrides:
        rows.append(("changes", ", ".join(f"{k}={v}" for k, v in run.overrides.items())))
    for attempt in run.history:
        rows.append(
            (
                f"attempt {attempt.number}",
                f"{_local(attempt.started)} → {_local(attempt.finished)}, "
                f"exit {attempt.exit_code}, pid {attempt.pid}",
            )
        )
    rows += [(m.name, _metric(m.name, m.value, m.step)) for m in run.latest_metrics]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:>{width}}  {value}")


def _metric(name: str, value: float | None, step: int) -> str:
    if value is None:
        return f"- (step {step})"
    if name == "data_wait":
        # The share of the last reporting interval the trainer waited for batches.
        hint = ": raise system.num_workers" if value > _STARVED else ""
        return f"{value:.0%} of the time waiting for batches (step {step}){hint}"
    return f"{value:.6g} (step {step})"


# Above this share of time waiting for data, the GPU idles for want of batches.
_STARVED = 0.2


@run_app.command("release")
@guarded
def release(run_id: str = _ID, as_json: bool = _JSON) -> None:
    """Let a run submitted with hold start.

    Example:

      lsdctl run release train-20261126-114502-3f9a
    """
    with ensure_daemon() as client:
        run = client.release(run_id)
    if as_json:
        echo_run_json(run.id, run.kind, run.state.value)
        return
    typer.echo(f"released run {run.id}: {run.state.value}")


@guarded
def logs(
    run_id: str = _ID,
    follow_: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
) -> None:
    """Print a run's log (stdout and stderr of its process).

    Examples:

      lsdctl logs train-20261126-114502-3f9a

      lsdctl logs train-20261126-114502-3f9a -f
    """
    with ensure_daemon() as client:
        offset = 0
        try:
            while True:
                chunk = client.log(run_id, offset)
                if chunk.text:
                    typer.echo(chunk.text, nl=False)
                offset = chunk.next_offset
                if chunk.next_offset > chunk.offset:
                    continue
                if not follow_ or chunk.finished:
                    return
                time.sleep(0.5)
        except KeyboardInterrupt:
            typer.echo(f"\nstopped following; run {run_id} goes on", err=True)


@guarded
def cancel(run_id: str = _ID, as_json: bool = _JSON) -> None:
    """Stop a run: SIGTERM (a training run saves a checkpoint), SIGKILL after a grace period.

    Example:

      lsdctl cancel train-20261126-114502-3f9a
    """
    with ensure_daemon() as client:
        run = client.cancel(run_id)
    if as_json:
        echo_run_json(run.id, run.kind, run.state.value)
        return
    if run.state == RunState.CANCELLED:
        typer.echo(f"cancelled run {run.id} (it had not started)")
    else:
        typer.echo(f"cancelling run {run.id}: it stops after saving a checkpoint")


@guarded
def resume(
    run_id: str = _ID,
    iterations: int | None = typer.Option(
        None, "--iterations", min=1, help="train: new total of iterations."
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="Queue it and return."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print {"run", "kind", "state"} as JSON (with -d: at once; else with run_dir and '
        "result once the run ends).",
    ),
) -> None:
    """Continue a stopped run as a new attempt (training goes on from its last checkpoint).

    Examples:

      lsdctl resume train-20261126-114502-3f9a

      lsdctl resume train-20261126-114502-3f9a --iterations 200000 -d
    """
    with ensure_daemon() as client:
        run = client.resume(run_id, iterations)
        if detach:
            if as_json:
                echo_run_json(run.id, run.kind, run.state.value)
            else:
                typer.echo(f"resumed run {run.id}: {run.state.value}")
            return
        detail = follow(client, run, run.kind)
    if detail is None:
        return
    if as_json:
        echo_run_json(detail.id, detail.kind, detail.state.value, detail.run_dir, detail.result)
        if detail.kind == "train":
            report_run(detail, quiet=True)  # the exit code its end implies
            return
    if detail.kind == "train":
        report_run(detail)
    elif detail.state != RunState.SUCCEEDED:
        typer.echo(f"error: run {detail.id} {detail.state.value}: {detail.reason}", err=True)
        raise typer.Exit(1)
