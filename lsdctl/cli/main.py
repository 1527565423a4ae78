"""The `lsdctl` command: every command, each from lsdctl/cli/NAME.py, registered here."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from lsdctl import __version__
from lsdctl.cli import cancel as cancel_cli
from lsdctl.cli import config as config_cli
from lsdctl.cli import daemon as daemon_cli
from lsdctl.cli import data as data_cli
from lsdctl.cli import demo as demo_cli
from lsdctl.cli import evaluate as evaluate_cli
from lsdctl.cli import fetch as fetch_cli
from lsdctl.cli import gpus as gpus_cli
from lsdctl.cli import init as init_cli
from lsdctl.cli import logs as logs_cli
from lsdctl.cli import model as model_cli
from lsdctl.cli import predict as predict_cli
from lsdctl.cli import resume as resume_cli
from lsdctl.cli import run as run_cli
from lsdctl.cli import runs as runs_cli
from lsdctl.cli import segment as segment_cli
from lsdctl.cli import train as train_cli
from lsdctl.cli import tui as tui_cli
from lsdctl.cli import view as view_cli

# typer 0.29 vendors click; its exception classes are reachable through the public ones.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


class _OneLineErrors(TyperGroup):
    """Usage errors as one `error: …` line with a pointer to --help, not a framed box."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone_mode = kwargs.pop("standalone_mode", True)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except _UsageError as exc:
            ctx: Any = exc.ctx  # type: ignore[attr-defined]
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())
                sys.exit(0)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)  # type: ignore[attr-defined]
            sys.exit(2)
        except _ClickException as exc:
            typer.echo(f"error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        if not standalone_mode:
            return rv
        # Without standalone mode click returns typer.Exit's code instead of exiting.
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="lsdctl",
    help=(
        "Train Local Shape Descriptor models on EM volumes and turn volumes into neuron "
        "segmentations.\n\n"
        "A day with lsdctl: `lsdctl init brain1 --dataset cremi`, `cd projects/brain1`, "
        "`lsdctl data import FILE`, `lsdctl data check`, then `lsdctl train`, `predict`, "
        "`segment` and `evaluate`. Inside a project's folder commands act on that project; "
        "elsewhere on $LSDCTL_PROJECT or the only project, and `--project/-P NAME` always "
        "wins. Projects live in ./projects (or $LSDCTL_PROJECTS); every environment "
        "variable is in docs/environment.md. Tab completion: `lsdctl --install-completion`."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)
# `lsdctl NAME` lives in lsdctl/cli/NAME.py: a command is its function NAME, a command
# with sub-commands its typer app. `lsdctl --help` lists commands first, then those with
# sub-commands, each in the order here.
_COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("init", init_cli.init),
    ("train", train_cli.train),
    ("predict", predict_cli.predict),
    ("segment", segment_cli.segment),
    ("evaluate", evaluate_cli.evaluate),
    ("runs", runs_cli.runs),
    ("logs", logs_cli.logs),
    ("cancel", cancel_cli.cancel),
    ("resume", resume_cli.resume),
    ("gpus", gpus_cli.gpus),
    ("demo", demo_cli.demo),
    ("tui", tui_cli.tui),
    ("view", view_cli.view),
]
_SUB_APPS: list[tuple[str, typer.Typer]] = [
    ("data", data_cli.app),
    ("config", config_cli.app),
    ("model", model_cli.app),
    ("run", run_cli.app),
    ("daemon", daemon_cli.app),
]
for name, command in _COMMANDS:
    app.command(name)(command)
for name, sub_app in _SUB_APPS:
    app.add_typer(sub_app, name=name)
# `lsdctl data fetch`: registered here, as fetch.py builds on data.py.
data_cli.app.add_typer(fetch_cli.app, name="fetch")


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
    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: following a run or serving the viewer would ignore a SIGINT sent
    # to stop it. As for foreground runs (cli/_foreground.py), SIGINT always stops lsdctl.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
