"""`lsdctl runs`: list the daemon's runs, newest first, one row each.

Inside a project's folder (or with $LSDCTL_PROJECT set) only that project's runs.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from daemon.schemas import RunInfo, RunState
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import complete_project, context_project
from lsdctl.cli._run_fields import eta, local_time, progress, score
from lsdctl.client import ensure_daemon

_STATES = ", ".join(s.value for s in RunState)


def _best(run: RunInfo) -> str:
    """The best validation as `VOI @STEP`; blank for runs never validated."""
    best = run.best_validation
    return "" if best is None else f"{score(best.voi)} @{best.step}"


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
            progress(run),
            f"{run.latest_loss:.4f}" if run.latest_loss is not None else "-",
            _best(run),
            eta(run),
            local_time(run.created),
            run.reason if run.state != RunState.SUCCEEDED else "",
        )
    Console(width=200 if not Console().is_terminal else None).print(table)
