"""The `lsdctl` command: one typer sub-app per noun, registered here."""

from __future__ import annotations

import typer

from lsdctl import __version__
from lsdctl.cli import config as config_cli
from lsdctl.cli import data as data_cli
from lsdctl.cli import demo as demo_cli
from lsdctl.cli import project as project_cli

app = typer.Typer(
    name="lsdctl",
    help=(
        "Train Local Shape Descriptor models on EM volumes and turn volumes into neuron "
        "segmentations.\n\n"
        "A day with lsdctl: `lsdctl init brain1 --preset cremi`, `lsdctl data import FILE "
        "--project brain1`, `lsdctl data check --project brain1`, then train, predict, "
        "segment and evaluate. Projects live in ./projects (or $LSDCTL_PROJECTS)."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.command("init")(project_cli.init)
app.add_typer(data_cli.app, name="data")
app.add_typer(config_cli.app, name="config")
app.command("demo")(demo_cli.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lsdctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def main() -> None:
    app()
