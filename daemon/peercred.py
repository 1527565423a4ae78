"""Refusing connections from other users: SO_PEERCRED on every unix-socket connection.

The socket file is 0600 in a 0700 folder, which keeps other users out; root passes file
permissions, so each connection's peer uid is checked as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(data)
    return pid, uid, gid


class PeerCheckedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing unix connections from another uid at once."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return  # TCP, only when asked for explicitly: no credentials to check
        pid, uid, _ = peer_credentials(sock)
        if uid != os.getuid():
            logger.warning("refused a connection from uid %d (pid %d): not our user", uid, pid)
            transport.close()
