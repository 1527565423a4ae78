"""`python -m daemon --tcp`: loopback only without a token file, and no TCP request
without the token; connections that cannot be checked are closed (fail closed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from daemon.peercred import protocol_for
from lsdctl.client import DaemonClient, DaemonNotRunning, DaemonRefused, ensure_daemon
from tests.conftest import CliCaller
from tests.daemon.conftest import ROOT, processes_of, short_home

TOKEN = "a-test-token-of-32-characters-xx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TcpDaemon:
    def __init__(self, *args: str) -> None:
        self.home = short_home()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [a.replace("PORT", str(self.port)) for a in args]
        self.env = {**os.environ, "LSDCTL_HOME": str(self.home)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> int | None:
        """Start it; None once it answers on the socket, else its exit code."""
        with (self.home / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        with DaemonClient(self.home) as client:
            while time.monotonic() < deadline:
                if client.is_running():
                    return None
                if self.process.poll() is not None:
                    return self.process.returncode
                time.sleep(0.05)
        raise AssertionError(f"daemon neither started nor failed:\n{self.log()}")

    def log(self) -> str:
        return (self.home / "daemon.log").read_text(errors="replace")

    def reap(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in processes_of(self.home):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def made() -> Iterator[list[TcpDaemon]]:
    daemons: list[TcpDaemon] = []
    yield daemons
    for daemon in daemons:
        daemon.reap()


def _daemon(made: list[TcpDaemon], *args: str) -> TcpDaemon:
    daemon = TcpDaemon(*args)
    made.append(daemon)
    return daemon


def test_loopback_needs_its_token(made: list[TcpDaemon], monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = _daemon(made, "--tcp", "127.0.0.1:PORT")
    assert daemon.start() is None, daemon.log()
    token_file = daemon.home / "tcp.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32

    with httpx.Client(base_url=daemon.url, trust_env=False) as http:
        refused = http.get("/v1/health")
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"
        assert "Bearer" in refused.json()["detail"]
        wrong = http.get("/v1/runs", headers={"Authorization": "Bearer " + "x" * len(token)})
        assert wrong.status_code == 401
        assert http.post("/v1/shutdown").status_code == 401  # and the daemon stays
        assert http.get("/openapi.json").status_code == 401
        ok = http.get("/v1/health", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["pid"] == daemon.process.pid  # type: ignore[union-attr]

    # lsdctl's own client over TCP: the home's token by default, LSDCTL_TOKEN over it
    monkeypatch.setenv("LSDCTL_DAEMON_URL", daemon.url)
    with DaemonClient(daemon.home) as client:
        assert client.health().pid == daemon.process.pid  # type: ignore[union-attr]
    monkeypatch.setenv("LSDCTL_TOKEN", "not-the-token-at-all-no")
    with DaemonClient(daemon.home) as client, pytest.raises(DaemonRefused, match="no valid token"):
        client.runs()
    monkeypatch.delenv("LSDCTL_DAEMON_URL")
    with DaemonClient(daemon.home) as client:  # the unix socket needs no token
        assert client.health().pid == daemon.process.pid  # type: ignore[union-attr]
        client.shutdown()
    assert daemon.process is not None
    daemon.process.wait(10)
    assert not token_file.exists()  # a token is valid only while its daemon runs


def test_beyond_loopback_only_with_a_token_file(
    made: list[TcpDaemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = _daemon(made, "--tcp", "0.0.0.0:PORT")
    assert refused.start() == 1
    assert "give --token-file" in refused.log()
    assert not (refused.home / "tcp.token").exists()

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    readable = _daemon(made, "--tcp", "0.0.0.0:PORT", "--token-file", str(token_file))
    assert readable.start() == 1
    assert f"chmod 600 {token_file}" in readable.log()

    token_file.chmod(0o600)
    daemon = _daemon(made, "--tcp", "0.0.0.0:PORT", "--token-file", str(token_file))
    assert daemon.start() is None, daemon.log()
    with httpx.Client(base_url=daemon.url, trust_env=False) as http:
        assert http.get("/v1/health").status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get("/v1/health", headers=headers).status_code == 200
    monkeypatch.setenv("LSDCTL_DAEMON_URL", daemon.url)
    monkeypatch.setenv("LSDCTL_TOKEN_FILE", str(token_file))
    with DaemonClient(short_home()) as client:  # another home: the token file alone counts
        assert client.health().pid == daemon.process.pid  # type: ignore[union-attr]


class _Transport:
    """Just enough of an asyncio transport for connection_made."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _UnreadableCredentials:
    family = socket.AF_UNIX

    def getsockname(self) -> str:
        return "/tmp/x.sock"

    def getpeername(self) -> str:
        return ""

    def getsockopt(self, *args: Any) -> bytes:
        raise OSError("no credentials")


class _Tcp:
    family = socket.AF_INET

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 1)

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 2)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never reached")


@pytest.mark.parametrize(
    ("sock", "token"),
    [(None, TOKEN), (_UnreadableCredentials(), TOKEN), (_Tcp(), None)],
    ids=["no socket", "unreadable credentials", "tcp without a token"],
)
def test_connections_that_cannot_be_checked_are_closed(sock: Any, token: str | None) -> None:
    # A loop of its own: an earlier test in this process may have closed the default one.
    loop = asyncio.new_event_loop()
    try:
        protocol = protocol_for(token)(
            config=uvicorn.Config(_app), server_state=ServerState(), app_state={}, _loop=loop
        )
        transport = _Transport(sock)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        assert transport.closed
    finally:
        loop.close()


def test_a_tcp_url_with_nothing_behind_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No local daemon is started in its place: the error names the URL."""
    home = short_home()
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("LSDCTL_DAEMON_URL", url)
    try:
        with pytest.raises(DaemonNotRunning, match=f"no lsdctl daemon answers at {url}"):
            ensure_daemon(home)
        assert not (home / "daemon.sock").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_lsdctl_daemon_start_with_tcp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`lsdctl daemon start --tcp` starts the daemon with its TCP listener and token."""
    home = short_home()
    monkeypatch.setenv("LSDCTL_HOME", str(home))
    monkeypatch.setenv("LSDCTL_PROJECTS", str(tmp_path))
    cli = CliCaller()
    try:
        cli.bad("daemon", "start", "--token-file", str(tmp_path / "t"), match="is for --tcp")
        port = _free_port()
        cli.ok("daemon", "start", "--tcp", f"127.0.0.1:{port}")
        token = (home / "tcp.token").read_text().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            assert http.get("/v1/health").status_code == 401
            headers = {"Authorization": f"Bearer {token}"}
            assert http.get("/v1/health", headers=headers).status_code == 200
        cli.bad("daemon", "start", "--tcp", f"127.0.0.1:{port}", match="running already")
    finally:
        cli("daemon", "stop")
        shutil.rmtree(home, ignore_errors=True)
