"""`lsdctl run`: one run by its id: `show` (state, config changes, attempts, metrics,
validation) and `release` (let a run submitted on hold start)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from daemon.schemas import RunDetail, ValidationPoint
from lsdctl.cli._foreground import echo_run_json
from lsdctl.cli._guard import guarded
from lsdctl.cli._run_args import RUN_ID, STATE_JSON
from lsdctl.cli._run_fields import eta, local_time, progress, score
from lsdctl.client import ensure_daemon

app = typer.Typer(help="One run: `lsdctl run show ID`, `lsdctl run release ID`.")


@app.command("show")
@guarded
def show(
    run_id: str = RUN_ID,
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
            score(point.voi_split),
            score(point.voi_merge),
            score(point.voi),
            score(point.arand),
            score(point.threshold, 2),
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
        ("progress", progress(run) + (f", eta {eta(run)}" if run.eta_s is not None else "")),
        ("loss", f"{run.latest_loss:.4f} at step {run.latest_step}" if run.latest_loss else "-"),
        ("gpus", ",".join(map(str, run.gpus)) or "none (CPU)"),
        ("created", local_time(run.created)),
        ("started", local_time(run.started)),
        ("finished", local_time(run.finished)),
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
                f"VOI {score(best.voi)} at step {best.step}, threshold "
                f"{score(best.threshold, 2)} (split {score(best.voi_split)}, merge "
                f"{score(best.voi_merge)}, ARAND {score(best.arand)})",
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
                f"{local_time(attempt.started)} → {local_time(attempt.finished)}, "
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


@app.command("release")
@guarded
def release(run_id: str = RUN_ID, as_json: bool = STATE_JSON) -> None:
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
