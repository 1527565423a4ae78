"""What the client says when the daemon's socket closes a connection without an answer.

Two daemons do that: one refusing a user other than its own (daemon.peercred), and one
dying mid-request. The user needs to hear different things, so the client looks at who
owns the socket and whether anything still listens on it. A real unix socket plays the
daemon here: it accepts each connection and closes it unanswered.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.paths import DaemonPaths
from lsdctl.client import DaemonClient, DaemonNotRunning, DaemonRefused
from lsdctl.errors import LsdctlError
from tests.daemon.conftest import short_home


class ClosingSocket:
    """Listens on `path`; closes every connection unanswered. `last=True`: stop
    listening (and remove the file) before closing the next connection, like a daemon
    killed while serving it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.recv(4096)
            if self.last:
                self.close()
            conn.close()

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def socket_home() -> Iterator[Path]:
    path = short_home()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _error(home: Path) -> LsdctlError:
    with DaemonClient(home, timeout=5) as client, pytest.raises(LsdctlError) as caught:
        client.health()
    return caught.value


def test_ours_still_listening_is_a_fault_and_ours_gone_is_no_daemon(socket_home: Path) -> None:
    server = ClosingSocket(DaemonPaths.resolve(socket_home).socket)
    try:
        error = _error(socket_home)
        assert type(error) is LsdctlError and "closed the connection mid-request" in str(error)
        server.last = True  # dies while serving: the same as no daemon at all
        error = _error(socket_home)
        assert isinstance(error, DaemonNotRunning)
        assert "`lsdctl daemon start` starts it" in str(error)
    finally:
        server.close()


@pytest.mark.skipif(os.getuid() != 0, reason="giving the socket to another user needs root")
def test_another_users_socket_closing_the_connection_is_a_refusal(socket_home: Path) -> None:
    server = ClosingSocket(DaemonPaths.resolve(socket_home).socket)
    try:
        os.chown(server.path, 65534, 65534)
        error = _error(socket_home)
        assert isinstance(error, DaemonRefused)
        assert "serves only the user who started it" in str(error)
    finally:
        server.close()
