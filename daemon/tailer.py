"""Reading a run's events.jsonl into SQLite, from the byte offset stored with the run.

The offset is committed in the same transaction as what was read, so after a daemon
crash the tail resumes exactly where the database stops: no gap, no duplicate. A last
line without its newline is left for next time (still being written, or a torn line).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from sqlmodel import Session

from daemon.store import Store
from daemon.tables import BlockGridRow, BlockRow, RunRow, ValidationRow

logger = logging.getLogger(__name__)

# At most this much of a file per read, so a long catch-up never stalls the API.
_CHUNK = 4 * 2**20


def read_events(path: Path, offset: int, limit: int = _CHUNK) -> tuple[list[dict[str, Any]], int]:
    """Complete events from `offset` on (at most about `limit` bytes) and the next offset.

    The twin of engine.runs.events.read_events, plus the read limit: the daemon imports no
    engine code (DESIGN.md), and events.jsonl is the contract both sides read.
    """
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events: list[dict[str, Any]] = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn line from a crash, followed by newer complete lines
        if isinstance(event, dict):
            events.append(event)
    return events, offset + end


class Tailer:
    """Applies events to runs; remembers per run whether the engine reports its own rate."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._metric_rate: set[int] = set()

    def reset(self, run: RunRow) -> None:
        """A new attempt starts: its rate is measured afresh."""
        assert run.seq is not None
        self._metric_rate.discard(run.seq)

    def tail(self, session: Session, run: RunRow, until_end: bool = False) -> int:
        """Read new events of `run` into the session (not committed); returns how many."""
        path = Path(run.run_dir) / "events.jsonl"
        count = 0
        while True:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return count
            if size <= run.events_offset:
                return count
            events, offset = read_events(path, run.events_offset)
            if offset == run.events_offset:
                return count  # only a partial line so far
            self._apply(session, run, events)
            run.events_offset = offset
            count += len(events)
            if not until_end:
                return count

    def _apply(self, session: Session, run: RunRow, events: list[dict[str, Any]]) -> None:
        assert run.seq is not None
        metrics: list[dict[str, Any]] = []
        blocks: dict[str, BlockRow] = {}  # this batch's rows, not yet flushed
        validations: dict[int, ValidationRow] = {}
        for event in events:
            kind = event.get("type")
            try:
                if kind == "metric":
                    self._metric(run, event, metrics)
                elif kind == "progress":
                    self._progress(run, event)
                elif kind == "checkpoint":
                    run.last_checkpoint = str(event.get("path"))
                elif kind == "result":
                    run.result_json = json.dumps(event)
                elif kind == "error":
                    run.error = str(event.get("message"))[:4000]
                elif kind == "block":
                    self._block(session, run.seq, event, blocks)
                elif kind == "validation":
                    self._validation(session, run, event, validations)
                elif kind == "blockgrid":
                    session.merge(
                        BlockGridRow(
                            run_seq=run.seq,
                            task=str(event["task"]),
                            shape=_csv(event["shape"]),
                            total=int(event["total"]),
                            block=_csv(event.get("block") or []),
                            offset=_csv(event.get("offset") or []),
                            t=_float(event.get("t")),
                        )
                    )
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("run %s: skipped malformed event %r (%s)", run.id, event, exc)
        self.store.add_metrics(session, metrics)
        if validations:
            self._best(session, run)
        session.add(run)

    def _best(self, session: Session, run: RunRow) -> None:
        # Recomputed from the table rather than taken from the events' `best` flags: a
        # resumed run that validates a step again may make that step worse, and then an
        # older point is the best again.
        assert run.seq is not None
        best = self.store.best_validation(session, run.seq)
        run.best_step = None if best is None else best.step
        run.best_voi = None if best is None else best.voi
        run.best_threshold = None if best is None else best.threshold

    @staticmethod
    def _block(
        session: Session, run_seq: int, event: dict[str, Any], batch: dict[str, BlockRow]
    ) -> None:
        block_id, status = str(event.get("id")), str(event.get("status"))
        row = batch.get(block_id) or session.get(BlockRow, (run_seq, block_id))
        if row is None:
            row = BlockRow(run_seq=run_seq, block_id=block_id, status=status)
        batch[block_id] = row
        task = event.get("task")
        row.task = str(task) if task is not None else block_id.rpartition(":")[0] or None
        if event.get("grid") is not None:
            row.grid = _csv(event["grid"])
        row.status = status
        row.worker = None if event.get("worker") is None else str(event["worker"])
        row.t = _float(event.get("t"))
        if status == "failed":
            row.error = str(event.get("error") or "")[-4000:]
        elif status in ("done", "skipped"):
            # A retried block that succeeded has no error any more.
            row.error, row.seconds = None, _float(event.get("seconds"))
        session.add(row)

    @staticmethod
    def _validation(
        session: Session, run: RunRow, event: dict[str, Any], batch: dict[int, ValidationRow]
    ) -> None:
        assert run.seq is not None
        step = int(event["step"])
        volumes = event.get("volumes")
        row = batch.get(step) or session.get(ValidationRow, (run.seq, step))
        if row is None:
            row = ValidationRow(run_seq=run.seq, step=step, attempt=max(run.attempts, 1))
        batch[step] = row
        row.attempt = max(run.attempts, 1)
        row.voi_split = _finite(event.get("voi_split"))
        row.voi_merge = _finite(event.get("voi_merge"))
        row.voi = _finite(event.get("voi"))
        row.arand = _finite(event.get("arand"))
        row.threshold = _finite(event.get("threshold"))
        row.seconds = _finite(event.get("seconds"))
        row.volumes_json = json.dumps(_volumes(volumes) if isinstance(volumes, dict) else {})
        row.t = _float(event.get("t"))
        session.add(row)

    def _metric(self, run: RunRow, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        assert run.seq is not None
        step, name, value = int(event["step"]), str(event["name"]), _float(event.get("value"))
        out.append(
            {
                "run_seq": run.seq,
                "name": name,
                "step": step,
                "attempt": max(run.attempts, 1),
                "value": value,
                "t": _float(event.get("t")),
            }
        )
        if name == "loss" and value is not None:
            run.latest_loss, run.latest_step = value, step
        elif name == "iterations_per_s" and value is not None:
            run.rate = value
            self._metric_rate.add(run.seq)

    def _progress(self, run: RunRow, event: dict[str, Any]) -> None:
        assert run.seq is not None
        done, total, t = int(event["done"]), int(event["total"]), _float(event.get("t"))
        run.progress_done, run.progress_total = done, total
        if run.seq in self._metric_rate or t is None:
            return
        # Without a rate from the engine: the average over this attempt so far.
        if run.progress_t0 is None or run.progress_done0 is None:
            run.progress_t0, run.progress_done0 = t, done
        elif t > run.progress_t0 and done > run.progress_done0:
            run.rate = (done - run.progress_done0) / (t - run.progress_t0)


def _csv(values: Any) -> str:
    return ",".join(str(int(v)) for v in values)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _finite(value: Any) -> float | None:
    """A score, or None for a missing or NaN one (JSON has no NaN on the wire)."""
    number = _float(value)
    return number if number is not None and math.isfinite(number) else None


def _volumes(volumes: dict[Any, Any]) -> dict[str, dict[str, float | int | None]]:
    """Each volume's numeric scores (voxel counts stay integers), NaN as None."""
    clean: dict[str, dict[str, float | int | None]] = {}
    for name, scores in volumes.items():
        if not isinstance(scores, dict):
            continue
        clean[str(name)] = {
            str(key): value if isinstance(value, int) else _finite(value)
            for key, value in scores.items()
            if isinstance(value, int | float | None) and not isinstance(value, bool)
        }
    return clean
