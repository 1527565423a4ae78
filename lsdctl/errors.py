"""The frontend's exceptions: one root."""

from __future__ import annotations


class LsdctlError(Exception):
    """Root of every error the frontend raises on purpose; printed as one line."""

    exit_code = 1


class UsageError(LsdctlError):
    """The user asked for something impossible: exit code 2."""

    exit_code = 2
