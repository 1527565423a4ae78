"""`lsdctl resume`: continue a stopped run in the daemon as a new attempt, and follow it."""

from __future__ import annotations

import typer

from daemon.schemas import RunState
from lsdctl.cli._follow import follow
from lsdctl.cli._foreground import echo_run_json, report_run
from lsdctl.cli._guard import guarded
from lsdctl.cli._run_args import RUN_ID
from lsdctl.client import ensure_daemon


@guarded
def resume(
    run_id: str = RUN_ID,
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
