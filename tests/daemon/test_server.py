"""The daemon process: private folder and socket, one daemon per home, peer credentials."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import ROOT, Daemon, DaemonMaker


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_is_private_and_health_reports_the_daemon(module_daemon: Daemon) -> None:
    daemon = module_daemon
    assert _mode(daemon.home) == 0o700
    assert stat.S_ISSOCK(daemon.socket.stat().st_mode)
    assert _mode(daemon.socket) == 0o600
    assert daemon.process is not None
    assert int((daemon.home / "daemon.pid").read_text()) == daemon.process.pid
    with daemon.client() as client:
        health = client.health()
    assert health.pid == daemon.process.pid
    assert health.socket == str(daemon.socket)
    assert set(health.runs) == {
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "interrupted",
    }
    with daemon.http() as http:
        schema = http.get("/openapi.json").json()
    assert "/v1/runs" in schema["paths"] and "/v1/runs/{run_id}/cancel" in schema["paths"]


def test_a_loose_existing_home_is_tightened(make_daemon: DaemonMaker) -> None:
    daemon = make_daemon(start=False)
    os.chmod(daemon.home, 0o755)
    daemon.start()
    assert _mode(daemon.home) == 0o700


def test_a_second_daemon_on_the_same_home_refuses(module_daemon: Daemon) -> None:
    daemon = module_daemon
    result = subprocess.run(
        [sys.executable, "-m", "daemon"],
        cwd=ROOT,
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert daemon.process is not None
    assert f"pid {daemon.process.pid}" in result.stderr
    with daemon.client() as client:
        assert client.health().pid == daemon.process.pid  # the first one is unharmed


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                inodes.add(fields[9])
    return inodes


def test_no_tcp_listener_by_default(module_daemon: Daemon) -> None:
    daemon = module_daemon
    assert daemon.process is not None
    fds = Path(f"/proc/{daemon.process.pid}/fd")
    sockets = {
        os.readlink(fd)[len("socket:[") : -1]
        for fd in fds.iterdir()
        if os.readlink(fd).startswith("socket:[")
    }
    assert sockets, "the daemon holds no socket at all?"
    assert not sockets & _listening_inodes()


@pytest.fixture
def throwaway_user() -> Iterator[tuple[int, int]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway user")
    name = f"lsdt{uuid.uuid4().hex[:8]}"
    created = subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
    )
    if created.returncode != 0:
        pytest.skip(f"useradd failed: {created.stderr.decode().strip()}")
    import pwd

    entry = pwd.getpwnam(name)
    try:
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


_CONNECT_AS = """
import os, socket, sys
uid, gid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
try:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET /v1/health HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n")
        print("answered" if sock.recv(1024) else "closed")
except PermissionError:
    print("permission denied")
except (ConnectionResetError, BrokenPipeError):  # refused: closed before or while sending
    print("closed")
"""


def _connect_as(uid: int, gid: int, path: Path) -> str:
    """Connect and send a request as another user: what happened.

    A fresh interpreter started as root drops to `uid` before connecting (the other user
    could not start this Python: it lives under root's home).
    """
    result = subprocess.run(
        [sys.executable, "-c", _CONNECT_AS, str(uid), str(gid), str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_user_is_kept_out(daemon: Daemon, throwaway_user: tuple[int, int]) -> None:
    uid, gid = throwaway_user
    # File permissions stop another user at the folder and the socket...
    assert _connect_as(uid, gid, daemon.socket) == "permission denied"
    # ...and when they do not (root, or loosened by hand), the peer uid check does.
    os.chmod(daemon.home, 0o711)
    os.chmod(daemon.socket, 0o666)
    assert _connect_as(uid, gid, daemon.socket) == "closed"
    assert f"refused a connection from uid {uid}" in daemon.log()
    with daemon.client() as client:  # the owner still gets answers
        assert client.health().pid > 0
