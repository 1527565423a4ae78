"""The `lsdctl` command: one typer sub-app per noun, registered here."""

from __future__ import annotations

import signal
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from lsdctl import __version__
from lsdctl.cli import blockwise as blockwise_cli
from lsdctl.cli import config as config_cli
from lsdctl.cli import daemon as daemon_cli
from lsdctl.cli import data as data_cli
from lsdctl.cli import demo as demo_cli
from lsdctl.cli import fetch as fetch_cli
from lsdctl.cli import gpus as gpus_cli
from lsdctl.cli import model as model_cli
from lsdctl.cli import project as project_cli
from lsdctl.cli import runs as runs_cli
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
app.command("init")(project_cli.init)
data_cli.app.add_typer(fetch_cli.app, name="fetch")
app.add_typer(data_cli.app, name="data")
app.add_typer(config_cli.app, name="config")
app.add_typer(model_cli.app, name="model")
app.command("train")(train_cli.train)
app.command("predict")(blockwise_cli.predict)
app.command("segment")(blockwise_cli.segment)
app.command("evaluate")(blockwise_cli.evaluate)
app.command("runs")(runs_cli.runs)
app.add_typer(runs_cli.run_app, name="run")
app.command("logs")(runs_cli.logs)
app.command("cancel")(runs_cli.cancel)
app.command("resume")(runs_cli.resume)
app.command("gpus")(gpus_cli.gpus)
app.add_typer(daemon_cli.app, name="daemon")
app.command("demo")(demo_cli.demo)
app.command("tui")(tui_cli.tui)
app.command("view")(view_cli.view)


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
