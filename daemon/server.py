"""`python -m daemon`: one daemon per LSDCTL_HOME, serving the API on a private socket.

The home folder is 0700, the socket 0600, and every connection's peer uid must be ours.
With `--tcp`, the daemon also listens on TCP, on loopback unless given `--token-file`,
and every TCP request must carry the token (daemon.auth).
`daemon.lock` (flock) makes a second daemon on the same home refuse to start; the pid
is in `daemon.pid`. Runs are processes of their own: stopping the daemon leaves them
running, and the next daemon re-attaches to them.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from daemon.api import DaemonState, create_app
from daemon.auth import parse_address, tcp_token
from daemon.errors import DaemonError
from daemon.gpus import Gpus
from daemon.paths import DaemonPaths
from daemon.peercred import protocol_for
from daemon.resolver import Resolver
from daemon.scheduler import Scheduler, Settings
from daemon.store import Store

logger = logging.getLogger(__name__)

EXIT_ALREADY_RUNNING = 2
EXIT_CANNOT_START = 1
# sockaddr_un.sun_path is 108 bytes, with a terminating NUL.
_MAX_SOCKET_PATH = 107


class AlreadyRunning(DaemonError):
    pass


def prepare_home(paths: DaemonPaths) -> None:
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = paths.home.stat()
    if info.st_uid != os.getuid():
        raise DaemonError(f"{paths.home} belongs to another user: set LSDCTL_HOME to your own")
    os.chmod(paths.home, 0o700)


def acquire_lock(paths: DaemonPaths) -> int:
    """Hold `daemon.lock` for the life of this process; AlreadyRunning if another holds it."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = paths.read_pid()
        raise AlreadyRunning(
            f"another lsdctl daemon (pid {pid if pid else 'unknown'}) is serving {paths.home}: "
            "`lsdctl daemon stop` stops it"
        ) from None
    return fd


def bind_unix(path: Path) -> socket.socket:
    """A listening socket at `path`, 0600 from the start (umask), replacing a stale file."""
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise DaemonError(
            f"socket path {path} is longer than {_MAX_SOCKET_PATH} bytes: "
            "set LSDCTL_HOME to a shorter folder"
        )
    # Only ever called with the lock held: a socket file here is a dead daemon's.
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def bind_tcp(
    address: str, paths: DaemonPaths, token_file: Path | None
) -> tuple[socket.socket, str]:
    """A listening TCP socket at `address`, and the token its requests must carry.

    Without `token_file`, only a loopback address is allowed, and the token is a fresh
    one written to `paths.token` (see daemon.auth).
    """
    host, port = parse_address(address)
    token = tcp_token(paths, host, token_file)
    sock = socket.create_server(
        (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=128
    )
    sock.setblocking(False)
    where = f"token file {token_file}" if token_file else f"token in {paths.token}"
    logger.warning("also listening on TCP %s: every request must carry the %s", address, where)
    return sock, token


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m daemon", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="State folder (LSDCTL_HOME).")
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        default=None,
        help="Also listen on TCP (off by default); every request must carry the token. "
        "Loopback only, unless --token-file is given.",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="A file (yours alone, chmod 600) holding the token TCP requests must carry; "
        "without it a fresh token is written to $LSDCTL_HOME/tcp.token.",
    )
    parser.add_argument("--log-level", default=os.environ.get("LSDCTL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    paths = DaemonPaths.resolve(args.home)
    try:
        prepare_home(paths)
        lock = acquire_lock(paths)
    except AlreadyRunning as exc:
        logger.error("%s", exc)
        return EXIT_ALREADY_RUNNING
    except (DaemonError, OSError) as exc:
        logger.error("cannot start: %s", exc)
        return EXIT_CANNOT_START
    try:
        paths.pid.write_text(f"{os.getpid()}\n")
        sockets = [bind_unix(paths.socket)]
        token = None
        if args.tcp:
            tcp, token = bind_tcp(args.tcp, paths, args.token_file)
            sockets.append(tcp)
        elif args.token_file:
            raise DaemonError("--token-file is for --tcp: give both, or neither")
        store = Store(paths.db)
    except (DaemonError, OSError, ValueError) as exc:
        logger.error("cannot start: %s", exc)
        _cleanup(paths)
        os.close(lock)
        return EXIT_CANNOT_START
    try:
        asyncio.run(_serve(paths, store, sockets, token))
    finally:
        store.close()
        _cleanup(paths)
        os.close(lock)
    return 0


def _cleanup(paths: DaemonPaths) -> None:
    if paths.read_pid() == os.getpid():
        paths.pid.unlink(missing_ok=True)
        paths.socket.unlink(missing_ok=True)
        paths.token.unlink(missing_ok=True)


async def _serve(
    paths: DaemonPaths, store: Store, sockets: list[socket.socket], tcp_token: str | None
) -> None:
    settings = Settings.from_env()
    gpus = Gpus()
    resolver = Resolver()
    scheduler = Scheduler(store, resolver, gpus, settings)
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        if server is not None:
            server.should_exit = True

    state = DaemonState(paths, store, scheduler, gpus, time.time(), shutdown)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await resolver.start()
        await scheduler.recover()
        task = asyncio.create_task(scheduler.run_forever())
        logger.info("lsdctl daemon %d serving %s", os.getpid(), paths.socket)
        try:
            yield
        finally:
            task.cancel()
            await resolver.close()
            logger.info("lsdctl daemon %d stopped; runs keep running", os.getpid())

    app = create_app(state, lifespan)
    config = uvicorn.Config(
        app,
        http=protocol_for(tcp_token),
        ws="none",  # no websockets: every connection goes through the checked protocol
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    await server.serve(sockets=sockets)
