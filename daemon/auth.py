"""The daemon's optional TCP listener: where it may listen, and the token it demands.

Over the unix socket, file permissions and the peer's uid keep other users out (see
daemon.peercred). TCP has neither: any local user reaches a loopback port, anyone on the
network a public one. So every request that arrives over TCP must carry
`Authorization: Bearer TOKEN`, and without a token file of the user's the daemon listens
on loopback only, with a token of its own in `$LSDCTL_HOME/tcp.token` (0600).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Any

from daemon.errors import DaemonError
from daemon.paths import DaemonPaths

logger = logging.getLogger(__name__)

# secrets.token_urlsafe(32) gives 43 characters; a token shorter than this is guessable.
_MIN_TOKEN_CHARS = 16
_DEFAULT_HOST = "127.0.0.1"

Receive = Any
Send = Any
Scope = dict[str, Any]


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPV6]:PORT` or `:PORT` (loopback) to (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise DaemonError(f"--tcp {address!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    return host.removeprefix("[").removesuffix("]") or _DEFAULT_HOST, int(port)


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DaemonError(f"--tcp host {host!r} does not resolve: {exc.strerror}") from None
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def tcp_token(paths: DaemonPaths, host: str, token_file: Path | None) -> str:
    """The token TCP requests must carry.

    With `token_file`, the token in it (the file must be the user's alone: no group or
    other permissions); any host is then allowed. Without, only a loopback host is, and
    a fresh token is written to `paths.token` for local clients to read.
    """
    if token_file is not None:
        return _read_token_file(token_file)
    if not is_loopback(host):
        raise DaemonError(
            f"--tcp {host} is reachable from other machines: give --token-file FILE (a "
            "secret only you can read) to listen there, or listen on 127.0.0.1"
        )
    token = secrets.token_urlsafe(32)
    paths.token.unlink(missing_ok=True)
    fd = os.open(paths.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _read_token_file(path: Path) -> str:
    try:
        info = path.stat()
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DaemonError(f"cannot read the token file {path}: {exc}") from None
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise DaemonError(
            f"the token file {path} must be yours and readable by you alone: chmod 600 {path}"
        )
    if len(token) < _MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise DaemonError(
            f"the token in {path} must be one word of at least {_MIN_TOKEN_CHARS} characters: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE"
        )
    return token


def token_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """Whether the request's Authorization header is `Bearer TOKEN` (constant time)."""
    expected = f"Bearer {token}".encode()
    supplied = [value for name, value in headers if name.lower() == b"authorization"]
    return len(supplied) == 1 and hmac.compare_digest(supplied[0].strip(), expected)


class TokenRequired:
    """ASGI middleware: answers 401 to any HTTP request without the token, and refuses
    every other kind of connection (websockets) outright. The daemon wraps its app in
    it for each TCP connection (daemon.peercred), never for the unix socket."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and token_matches(scope["headers"], self.token):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        client = scope.get("client")
        logger.warning("refused a TCP request without the token from %s", client)
        body = json.dumps(
            {
                "detail": "this request carries no valid token: send `Authorization: Bearer "
                "TOKEN` with the daemon's token (LSDCTL_TOKEN_FILE)",
                "code": "unauthorized",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
