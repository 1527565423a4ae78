"""`lsdctl logs`: print a run's log (its process's stdout and stderr), or follow it with -f."""

from __future__ import annotations

import time

import typer

from lsdctl.cli._guard import guarded
from lsdctl.cli._run_args import RUN_ID
from lsdctl.client import ensure_daemon


@guarded
def logs(
    run_id: str = RUN_ID,
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
