"""The daemon's exceptions: one root."""

from __future__ import annotations


class DaemonError(Exception):
    """Root of every error the daemon raises on purpose."""
