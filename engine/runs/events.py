"""`events.jsonl`: what a run reports, one JSON object a line, flushed per line.

Types: metric (step, name, value), progress (done, total), block (id, status, worker),
checkpoint (iteration, path), result (…), error (message). Each line carries `t`, the
Unix time. A reader skips a partial last line (a crash mid-write) and resumes there.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import IO, Any


class EventWriter:
    """Appends events; every line is flushed (and the file fsynced on checkpoints/results)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", buffering=1)

    def emit(self, type_: str, durable: bool = False, **fields: Any) -> None:
        event = {"t": round(time.time(), 3), "type": type_, **fields}
        self._file.write(json.dumps(event, default=_plain) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def metric(self, step: int, name: str, value: float) -> None:
        self.emit("metric", step=step, name=name, value=value if math.isfinite(value) else None)

    def close(self) -> None:
        self._file.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    return str(value)


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte `offset` on, and the offset to continue from.

    A last line without its newline is not consumed: it is either still being written
    or the remains of a crash, and is read again (or skipped) next time.
    """
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    events: list[dict[str, Any]] = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn line from a crash, followed by newer complete lines
        if isinstance(event, dict):
            events.append(event)
    return events, offset + end


def read_events_of(path: Path, kind: str) -> list[dict[str, Any]]:
    """Every complete event of one type, in order: a long training log is mostly metric
    lines, so only lines that mention the type are parsed."""
    needle = f'"{kind}"'.encode()
    found: list[dict[str, Any]] = []
    try:
        with path.open("rb") as f:
            for line in f:
                if needle not in line or not line.endswith(b"\n"):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a torn line from a crash
                if isinstance(event, dict) and event.get("type") == kind:
                    found.append(event)
    except FileNotFoundError:
        return []
    return found
