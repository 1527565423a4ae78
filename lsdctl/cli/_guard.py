"""Turning expected errors into one line and an exit code, for every command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from engine.errors import EngineError, InputError
from lsdctl.errors import LsdctlError

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a command; known errors become `error: …` on one line and exit 2 (bad input) or 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise fail(str(exc), 2) from None
        except EngineError as exc:
            raise fail(str(exc), 1) from None
        except LsdctlError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper


def parse_ints(text: str | None, option: str) -> list[int] | None:
    """`40,4,4` → [40, 4, 4]; a bad value is an InputError naming the option."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(
            f"{option} takes whole numbers separated by commas, e.g. 40,4,4; got {text!r}"
        ) from None
    if not values:
        raise InputError(f"{option} needs at least one value")
    return values
