"""`lsdctl daemon start|stop|status|restart`: the local daemon that queues and runs work."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import typer

from engine.errors import InputError
from lsdctl.cli._guard import fail, guarded
from lsdctl.client import DaemonClient, DaemonNotRunning, ensure_daemon

app = typer.Typer(
    help="Start, stop and inspect the lsdctl daemon (queue, GPUs, run records in SQLite). "
    "Commands that need it start it themselves.",
    no_args_is_help=True,
)

_STOP_TIMEOUT_S = 10.0
_JSON = typer.Option(False, "--json", help="Print pid, socket and log (or what was done) as JSON.")


def _health_json(client: DaemonClient, **extra: object) -> str:
    health = client.health()
    return json.dumps(
        {"running": True, **extra, **health.model_dump(mode="json"), "log": str(client.paths.log)},
        indent=2,
    )


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a daemon this process started stays one until reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


@app.command("start")
@guarded
def start(
    as_json: bool = _JSON,
    tcp: str | None = typer.Option(
        None,
        "--tcp",
        metavar="HOST:PORT",
        help="Also listen on TCP; every request must carry the token. Loopback only unless "
        "--token-file is given (then a fresh token is written to $LSDCTL_HOME/tcp.token).",
    ),
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="With --tcp: a file (yours alone, chmod 600) holding the token requests must "
        "carry; needed to listen beyond loopback.",
    ),
) -> None:
    """Start the daemon in the background (log: $LSDCTL_HOME/daemon.log).

    Examples:

      lsdctl daemon start

      lsdctl daemon start --tcp 127.0.0.1:8765   # LSDCTL_DAEMON_URL=http://127.0.0.1:8765
    """
    if token_file is not None and tcp is None:
        raise InputError("--token-file is for --tcp: give both, or neither")
    args = [
        *(["--tcp", tcp] if tcp else []),
        *(["--token-file", str(token_file)] if token_file else []),
    ]
    with DaemonClient() as client:
        if client.is_running():
            if args:
                raise InputError(
                    "the lsdctl daemon is running already as it was started: `lsdctl daemon "
                    "stop` first to start it with --tcp"
                )
            if as_json:
                typer.echo(_health_json(client, started=False))
                return
            health = client.health()
            typer.echo(f"the lsdctl daemon is running already (pid {health.pid}, {health.socket})")
            return
    with ensure_daemon(args=args) as client:
        if as_json:
            typer.echo(_health_json(client, started=True))
            return
        health = client.health()
        typer.echo(
            f"started the lsdctl daemon (pid {health.pid}, socket {health.socket}, "
            f"log {client.paths.log})"
        )


def _stop() -> bool:
    """Stop a running daemon; False when none was running."""
    with DaemonClient() as client:
        try:
            pid = client.health().pid
        except DaemonNotRunning:
            return False
        try:
            client.shutdown()
        except DaemonNotRunning:
            pass  # it went away between the two calls
    if not _wait_gone(pid, _STOP_TIMEOUT_S):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 5.0):
            raise fail(f"the lsdctl daemon (pid {pid}) does not stop: `kill -9 {pid}`", 1)
    return True


@app.command("stop")
@guarded
def stop(as_json: bool = _JSON) -> None:
    """Stop the daemon. Runs keep running; the next daemon re-attaches to them.

    Example:

      lsdctl daemon stop
    """
    stopped = _stop()
    if as_json:
        typer.echo(json.dumps({"running": False, "stopped": stopped}, indent=2))
        return
    if stopped:
        typer.echo("stopped the lsdctl daemon; runs keep running and are re-attached on start")
    else:
        typer.echo("the lsdctl daemon is not running")


@app.command("restart")
@guarded
def restart(as_json: bool = _JSON) -> None:
    """Stop the daemon (if running) and start it again.

    Example:

      lsdctl daemon restart
    """
    _stop()
    with ensure_daemon() as client:
        if as_json:
            typer.echo(_health_json(client, started=True))
            return
        health = client.health()
        typer.echo(f"restarted the lsdctl daemon (pid {health.pid}, socket {health.socket})")


@app.command("status")
@guarded
def status(
    as_json: bool = typer.Option(False, "--json", help="pid, uptime, socket, runs by state."),
) -> None:
    """Whether the daemon runs; its pid, uptime, socket and runs by state (exit 1 if not).

    Examples:

      lsdctl daemon status

      lsdctl daemon status --json
    """
    with DaemonClient() as client:
        try:
            health = client.health()
        except DaemonNotRunning:
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "running": False,
                            "home": str(client.paths.home),
                            "socket": str(client.paths.socket),
                        }
                    )
                )
                raise typer.Exit(1) from None
            raise fail(
                "the lsdctl daemon is not running: `lsdctl daemon start` starts it "
                "(commands that need it start it too)",
                1,
            ) from None
    if as_json:
        typer.echo(json.dumps({"running": True, **health.model_dump(mode="json")}, indent=2))
        return
    runs = ", ".join(f"{n} {state}" for state, n in health.runs.items() if n) or "no runs"
    typer.echo(f"the lsdctl daemon {health.version} is running: pid {health.pid}")
    typer.echo(f"  up {health.uptime_s:.0f} s, socket {health.socket}")
    typer.echo(f"  runs: {runs}")
