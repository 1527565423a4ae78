"""Reading a run's events.jsonl into SQLite, from the byte offset stored with the run.

The offset is committed in the same transaction as what was read, so after a daemon
crash the tail resumes exactly where the database stops: no gap, no duplicate. A last
line without its newline is left for next time (still being written, or a torn line).
The file and its events are engine.contract's (the one engine module the daemon reads);
events of a type it does not know (a newer engine's) are passed over.
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
from engine.contract import (
    EVENTS_FILE,
    BlockEvent,
    BlockGridEvent,
    CheckpointEvent,
    ErrorEvent,
    MetricEvent,
    ProgressEvent,
    ResultEvent,
    ValidationEvent,
    parse_event,
    read_events,
)

logger = logging.getLogger(__name__)

# At most this much of a file per read, so a long catch-up never stalls the API.
_CHUNK = 4 * 2**20


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
        path = Path(run.run_dir) / EVENTS_FILE
        count = 0
        while True:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return count
            if size <= run.events_offset:
                return count
            events, offset = read_events(path, run.events_offset, _CHUNK)
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
        for raw in events:
            try:
                event = parse_event(raw)
                if isinstance(event, MetricEvent):
                    self._metric(run, event, metrics)
                elif isinstance(event, ProgressEvent):
                    self._progress(run, event)
                elif isinstance(event, CheckpointEvent):
                    run.last_checkpoint = event.path
                elif isinstance(event, ResultEvent):
                    run.result_json = json.dumps(raw)
                elif isinstance(event, ErrorEvent):
                    run.error = event.message[:4000]
                elif isinstance(event, BlockEvent):
                    self._block(session, run.seq, event, blocks)
                elif isinstance(event, ValidationEvent):
                    self._validation(session, run, event, validations)
                elif isinstance(event, BlockGridEvent):
                    session.merge(
                        BlockGridRow(
                            run_seq=run.seq,
                            task=event.task,
                            shape=_csv(event.shape),
                            total=event.total,
                            block=_csv(event.block),
                            offset=_csv(event.offset),
                            t=event.t,
                        )
                    )
            except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
                logger.warning("run %s: skipped malformed event %r (%s)", run.id, raw, exc)
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
        session: Session, run_seq: int, event: BlockEvent, batch: dict[str, BlockRow]
    ) -> None:
        block_id, status = event.id, event.status
        row = batch.get(block_id) or session.get(BlockRow, (run_seq, block_id))
        if row is None:
            row = BlockRow(run_seq=run_seq, block_id=block_id, status=status)
        batch[block_id] = row
        row.task = event.task if event.task is not None else block_id.rpartition(":")[0] or None
        if event.grid is not None:
            row.grid = _csv(event.grid)
        row.status = status
        row.worker = None if event.worker is None else str(event.worker)
        row.t = event.t
        if status == "failed":
            row.error = (event.error or "")[-4000:]
        elif status in ("done", "skipped"):
            # A retried block that succeeded has no error any more.
            row.error, row.seconds = None, event.seconds
        session.add(row)

    @staticmethod
    def _validation(
        session: Session, run: RunRow, event: ValidationEvent, batch: dict[int, ValidationRow]
    ) -> None:
        assert run.seq is not None
        step = event.step
        row = batch.get(step) or session.get(ValidationRow, (run.seq, step))
        if row is None:
            row = ValidationRow(run_seq=run.seq, step=step, attempt=max(run.attempts, 1))
        batch[step] = row
        row.attempt = max(run.attempts, 1)
        row.voi_split = _finite(event.voi_split)
        row.voi_merge = _finite(event.voi_merge)
        row.voi = _finite(event.voi)
        row.arand = _finite(event.arand)
        row.threshold = _finite(event.threshold)
        row.seconds = _finite(event.seconds)
        row.volumes_json = json.dumps(_volumes(event.volumes))
        row.t = event.t
        session.add(row)

    def _metric(self, run: RunRow, event: MetricEvent, out: list[dict[str, Any]]) -> None:
        assert run.seq is not None
        step, name, value = event.step, event.name, event.value
        out.append(
            {
                "run_seq": run.seq,
                "name": name,
                "step": step,
                "attempt": max(run.attempts, 1),
                "value": value,
                "t": event.t,
            }
        )
        if name == "loss" and value is not None:
            run.latest_loss, run.latest_step = value, step
        elif name == "iterations_per_s" and value is not None:
            run.rate = value
            self._metric_rate.add(run.seq)

    def _progress(self, run: RunRow, event: ProgressEvent) -> None:
        assert run.seq is not None
        done, total, t = event.done, event.total, event.t
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


def _finite(value: Any) -> float | None:
    """A score, or None for a missing or NaN one (JSON has no NaN on the wire)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


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
