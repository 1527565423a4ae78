"""`lsdctl cancel`: stop a run in the daemon (a queued one never starts)."""

from __future__ import annotations

import typer

from daemon.schemas import RunState
from lsdctl.cli._foreground import echo_run_json
from lsdctl.cli._guard import guarded
from lsdctl.cli._run_args import RUN_ID, STATE_JSON
from lsdctl.client import ensure_daemon


@guarded
def cancel(run_id: str = RUN_ID, as_json: bool = STATE_JSON) -> None:
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
