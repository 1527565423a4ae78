"""Who may talk to the daemon, checked as each connection is made; failing closed.

Unix socket: the socket file is 0600 in a 0700 folder, which keeps other users out; root
passes file permissions, so each connection's peer uid (SO_PEERCRED) is checked as well,
and a connection whose credentials cannot be read is closed. TCP (only when asked for):
every request on the connection must carry the daemon's token (daemon.auth). A
connection of any other kind, or one whose socket cannot be told, is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct

from uvicorn.protocols.http.h11_impl import H11Protocol

from daemon.auth import TokenRequired

logger = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")  # pid, uid, gid
_TCP = (socket.AF_INET, socket.AF_INET6)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(data)
    return pid, uid, gid


class PeerCheckedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, admitting unix connections of our own uid and,
    when `tcp_token` is set, TCP connections whose every request carries it."""

    tcp_token: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX:
            self._check_peer(sock, transport)
        elif family in _TCP and self.tcp_token:
            self.app = TokenRequired(self.app, self.tcp_token)
        else:
            logger.warning("refused a connection of unknown kind (socket %r)", sock)
            transport.close()

    def _check_peer(self, sock: socket.socket, transport: asyncio.Transport) -> None:
        try:
            pid, uid, _ = peer_credentials(sock)
        except (OSError, struct.error) as exc:
            logger.warning("refused a connection whose credentials cannot be read: %s", exc)
            transport.close()
            return
        if uid != os.getuid():
            logger.warning("refused a connection from uid %d (pid %d): not our user", uid, pid)
            transport.close()


def protocol_for(tcp_token: str | None) -> type[PeerCheckedH11Protocol]:
    """The protocol class to serve with: TCP connections need `tcp_token` (none: refused)."""
    return type("TokenCheckedH11Protocol", (PeerCheckedH11Protocol,), {"tcp_token": tcp_token})
