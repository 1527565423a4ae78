"""The scheduler's relay: the workers' block events into events.jsonl (the run's single
writer), and daisy's block counts as progress events."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.blockwise.task import BLOCKS_DIR, SKIPPED, Grid, safe_name
from engine.contract import EventWriter, read_events

# Progress events at most this often: daisy reports every block change.
_PROGRESS_EVERY_S = 0.5


class Relay:
    """Moves the workers' block events into events.jsonl, and daisy's counts as progress.

    daisy calls the observer methods from its own threads, the relay thread reads the
    block files: everything that writes events goes through one lock.
    """

    def __init__(
        self,
        run_dir: Path,
        events: EventWriter,
        grid: Grid,
        task_ids: Sequence[str],
        progress: tuple[int, int] | None,
    ) -> None:
        self.progress = progress
        self.folder = run_dir / BLOCKS_DIR
        self.events = events
        self.grid = grid
        self.task_ids = list(task_ids)
        self.prefixes = [f"{safe_name(t)}.w" for t in task_ids]
        self.lock = threading.Lock()
        self.offsets: dict[Path, int] = {}
        self.failures: dict[tuple[str, tuple[int, ...]], str] = {}
        self.masked: set[tuple[str, tuple[int, ...]]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="block-relay", daemon=True)
        self._last_progress = 0.0
        self.folder.mkdir(parents=True, exist_ok=True)
        # Files of an earlier attempt were relayed then: start after their end.
        for path in self._files():
            self.offsets[path] = path.stat().st_size

    def _files(self) -> list[Path]:
        return sorted(p for prefix in self.prefixes for p in self.folder.glob(f"{prefix}*.jsonl"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self.poll()

    def poll(self) -> None:
        for path in self._files():
            found, self.offsets[path] = read_events(path, self.offsets.get(path, 0))
            for event in found:
                self._relay(event)

    def _relay(self, event: dict[str, Any]) -> None:
        worker = event.get("worker")
        task = str(event.get("task"))
        with self.lock:
            if event.get("type") == "worker":
                extra = {k: event[k] for k in ("host", "gpu", "blocks") if k in event}
                self.events.emit(
                    "worker", task=task, worker=worker, status=event.get("status"), **extra
                )
                return
            offset = tuple(event.get("offset") or ())
            status = str(event.get("status"))
            fields: dict[str, Any] = {
                "id": f"{task}:{self.grid.index(offset)}",
                "task": task,
                "grid": list(self.grid.position(offset)),
                "status": status,
                "worker": worker,
            }
            if status == "failed":
                self.failures[(task, offset)] = str(event.get("error", ""))
                fields["error"] = self.failures[(task, offset)][-4000:]
            elif status in ("done", SKIPPED):
                self.failures.pop((task, offset), None)
                fields["seconds"] = event.get("seconds")
                if status == SKIPPED:
                    self.masked.add((task, offset))
            self.events.emit("block", **fields)

    # daisy's observer protocol
    def on_start(self, states: dict[str, Any]) -> None:
        self._progress(states, force=True)

    def on_progress(self, states: dict[str, Any]) -> None:
        self._progress(states)

    def on_finish(self, states: dict[str, Any]) -> None:
        self._progress(states, force=True)

    def _progress(self, states: dict[str, Any], force: bool = False) -> None:
        mine = [states[t] for t in self.task_ids if t in states]
        if not mine:
            return
        now = time.monotonic()
        if not force and now - self._last_progress < _PROGRESS_EVERY_S:
            return
        self._last_progress = now
        done = sum(int(s.completed_count) for s in mine)
        total = sum(int(s.total_block_count) for s in mine)
        failed = sum(int(s.failed_count) for s in mine)
        if self.progress is not None:  # part of a larger run: the run's count
            done, total = done + self.progress[0], self.progress[1]
        with self.lock:
            self.events.emit(
                "progress", task=",".join(self.task_ids), done=done, total=total, failed=failed
            )
