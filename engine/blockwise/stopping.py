"""Stopping a blockwise run: the stop request (safe from a signal handler), the error it
ends the run with, and ending this process's children (the workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from engine.errors import EngineError


class Interrupted(EngineError):
    """`request_stop()` was called (a SIGTERM): the run stopped; finished blocks are kept."""


_STOP = threading.Event()


def request_stop() -> None:
    """Stop the blockwise run in progress: its workers are ended, `run_stages` raises
    Interrupted. Safe to call from a signal handler."""
    _STOP.set()


def stop_requested() -> bool:
    """Whether `request_stop()` was called."""
    return _STOP.is_set()


def end_children(grace: float = 5.0) -> None:
    """SIGTERM this process's children (the workers; a cluster worker's submitter cancels
    its job on SIGTERM), then SIGKILL what is left after `grace` seconds."""
    pids = children()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def children() -> list[int]:
    """The pids of this process's children (from /proc)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")
