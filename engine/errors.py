"""The engine's exceptions: one root, and a subclass for input the user must fix."""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class InputError(EngineError):
    """Bad input or configuration: the message says what is wrong and what to do.

    Frontends print the message on one line and exit with code 2; entry points exit 2.
    """
