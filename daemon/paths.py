"""Where a daemon keeps its state; shared with the CLI, so it imports nothing but stdlib.

`$LSDCTL_HOME`, else `$XDG_STATE_HOME/lsdctl`, else `~/.local/state/lsdctl`. The folder
holds the socket, the SQLite database, the pid file, the singleton lock, the log and,
while the daemon listens on TCP without a token file of the user's, its token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    explicit = os.environ.get("LSDCTL_HOME")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser() / "lsdctl"


@dataclass(frozen=True)
class DaemonPaths:
    home: Path

    @classmethod
    def resolve(cls, home: Path | None = None) -> DaemonPaths:
        return cls((home or default_home()).absolute())

    @property
    def socket(self) -> Path:
        return self.home / "daemon.sock"

    @property
    def db(self) -> Path:
        return self.home / "lsdctl.db"

    @property
    def pid(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def lock(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def log(self) -> Path:
        return self.home / "daemon.log"

    @property
    def token(self) -> Path:
        """The token a loopback TCP listener demands, when no token file was given."""
        return self.home / "tcp.token"

    def read_pid(self) -> int | None:
        try:
            return int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None
