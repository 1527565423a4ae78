"""The argument and option shared by the commands that act on one run by its id
(`lsdctl run show|release`, `logs`, `cancel`, `resume`)."""

from __future__ import annotations

import typer

RUN_ID = typer.Argument(..., help="Run id, e.g. train-20261126-114502-3f9a (see `lsdctl runs`).")
STATE_JSON = typer.Option(False, "--json", help='Print {"run", "kind", "state"} as JSON.')
