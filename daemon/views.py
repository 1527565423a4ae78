"""Rows to wire models: what RunInfo, RunDetail, MetricPoint and ValidationPoint are
made of."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from daemon.schemas import (
    Attempt,
    BlockMap,
    BlockState,
    BlockTask,
    CheckpointInfo,
    Checkpoints,
    MetricPoint,
    RunDetail,
    RunInfo,
    RunState,
    Validation,
    ValidationPoint,
    VolumeScores,
)
from daemon.store import Store
from daemon.tables import (
    AttemptRow,
    BlockGridRow,
    BlockRow,
    MetricRow,
    ProjectRow,
    RunRow,
    ValidationRow,
)
from engine.contract import CHECKPOINTS, list_checkpoints, read_best

logger = logging.getLogger(__name__)

_STATUSES = ("pending", "running", "done", "skipped", "failed")


def when(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def indices(text: str) -> list[int]:
    return [int(i) for i in text.split(",") if i]


def _eta(run: RunRow) -> float | None:
    if run.state != RunState.RUNNING or not run.rate or run.progress_total is None:
        return None
    return max(run.progress_total - (run.progress_done or 0), 0) / run.rate


def run_info(
    run: RunRow, project: ProjectRow, after: list[str], best: ValidationRow | None = None
) -> RunInfo:
    return RunInfo(
        id=run.id,
        project=project.name,
        project_path=project.path,
        kind=run.kind,
        state=RunState(run.state),
        reason=run.reason,
        priority=run.priority,
        hold=run.hold,
        created=when(run.created),  # type: ignore[arg-type]
        started=when(run.started),
        finished=when(run.finished),
        attempts=run.attempts,
        exit_code=run.exit_code,
        error=run.error,
        gpus=indices(run.gpus),
        gpus_requested=run.gpus_requested,
        pid=run.pid,
        progress_done=run.progress_done,
        progress_total=run.progress_total,
        latest_loss=run.latest_loss,
        latest_step=run.latest_step,
        eta_s=_eta(run),
        rate=run.rate,
        parent=run.parent,
        after=after,
        run_dir=run.run_dir,
        best_validation=None if best is None else validation_point(best, run.best_step),
    )


def run_infos(store: Store, session: Session, runs: Sequence[RunRow]) -> list[RunInfo]:
    projects = store.projects_by_id(session, (r.project_id for r in runs))
    after = store.dependency_ids(session, (r.seq for r in runs if r.seq is not None))
    best = store.best_validations(session, runs)
    return [
        run_info(r, projects[r.project_id], after.get(r.seq or 0, []), best.get(r.seq or 0))
        for r in runs
    ]


def metric_point(row: MetricRow) -> MetricPoint:
    return MetricPoint(name=row.name, step=row.step, value=row.value, attempt=row.attempt, t=row.t)


def _volume_scores(text: str) -> dict[str, VolumeScores]:
    try:
        volumes = json.loads(text)
    except ValueError:
        return {}
    fields = VolumeScores.model_fields
    scores = {}
    for name, values in volumes.items() if isinstance(volumes, dict) else ():
        if isinstance(values, dict):
            # Scores this daemon does not know (a newer engine's) are left out.
            known = {k: v for k, v in values.items() if k in fields}
            try:
                scores[name] = VolumeScores.model_validate(known)
            except ValueError:
                logger.warning("skipped unreadable scores of volume %s: %r", name, values)
    return scores


def validation_point(row: ValidationRow, best_step: int | None) -> ValidationPoint:
    return ValidationPoint(
        step=row.step,
        attempt=row.attempt,
        voi_split=row.voi_split,
        voi_merge=row.voi_merge,
        voi=row.voi,
        arand=row.arand,
        threshold=row.threshold,
        seconds=row.seconds,
        best=row.step == best_step,
        volumes=_volume_scores(row.volumes_json),
        t=row.t,
    )


def validation(store: Store, session: Session, run: RunRow) -> Validation:
    assert run.seq is not None
    rows = store.validation(session, run.seq)
    return Validation(run=run.id, points=[validation_point(r, run.best_step) for r in rows])


def attempt(row: AttemptRow) -> Attempt:
    return Attempt(
        number=row.number,
        pid=row.pid,
        started=when(row.started),  # type: ignore[arg-type]
        finished=when(row.finished),
        exit_code=row.exit_code,
        gpus=indices(row.gpus),
        iterations=row.iterations,
    )


def run_detail(store: Store, session: Session, run: RunRow) -> RunDetail:
    assert run.seq is not None
    info = run_infos(store, session, [run])[0]
    config = store.config(session, run.seq)

    def loads(text: str | None) -> dict[str, Any]:
        return json.loads(text) if text else {}

    return RunDetail(
        **info.model_dump(),
        config=loads(config.config_json if config else None),
        inputs=loads(config.inputs_json if config else None),
        overrides=loads(config.overrides_json if config else None),
        history=[attempt(a) for a in store.attempts(session, run.seq)],
        latest_metrics=[metric_point(m) for m in store.latest_metrics(session, run.seq)],
        last_checkpoint=run.last_checkpoint,
        result=loads(run.result_json) or None,
        validation=validation(store, session, run).points,
    )


def _position(index: int, shape: list[int]) -> list[int]:
    """Row-major grid position of `index` (what the engine numbers blocks by)."""
    position = []
    for size in reversed(shape):
        index, rest = divmod(index, max(size, 1))
        position.append(rest)
    return position[::-1]


def _block_state(row: BlockRow, shape: list[int]) -> BlockState | None:
    try:
        index = int(row.block_id.rpartition(":")[2])
    except ValueError:
        return None
    return BlockState(
        index=index,
        grid=indices(row.grid) if row.grid else _position(index, shape),
        status=row.status,
        worker=row.worker,
        t=row.t,
        seconds=row.seconds,
        error=row.error,
    )


def block_map(store: Store, session: Session, run: RunRow, task: str | None) -> BlockMap:
    """Each task's grid with its started blocks; tasks without a grid event come last."""
    assert run.seq is not None
    grids: dict[str, BlockGridRow] = {g.task: g for g in store.block_grids(session, run.seq)}
    by_task: dict[str, list[BlockRow]] = {}
    for row in store.blocks(session, run.seq, task):
        name = row.task if row.task is not None else row.block_id.rpartition(":")[0]
        by_task.setdefault(name, []).append(row)
    names = [n for n in grids if task is None or n == task]
    names += sorted(n for n in by_task if n not in grids)
    tasks = []
    for name in names:
        grid = grids.get(name)
        shape = indices(grid.shape) if grid else []
        states = [
            s for s in (_block_state(r, shape) for r in by_task.get(name, [])) if s is not None
        ]
        states.sort(key=lambda s: s.index)
        total = grid.total if grid else len(states)
        counts = dict.fromkeys(_STATUSES, 0)
        for state in states:
            counts[state.status] = counts.get(state.status, 0) + 1
        counts["pending"] = max(total - len(states), 0)
        tasks.append(
            BlockTask(
                task=name,
                shape=shape,
                total=total,
                block=indices(grid.block) if grid else [],
                offset=indices(grid.offset) if grid else [],
                counts=counts,
                blocks=states,
            )
        )
    return BlockMap(run=run.id, tasks=tasks)


def checkpoints(run: RunRow) -> Checkpoints:
    """The complete checkpoints in RUN_DIR/checkpoints (temporary files are not listed),
    the best validation's marked."""
    run_dir = Path(run.run_dir)
    folder = run_dir / CHECKPOINTS
    best_record = read_best(run_dir)
    best = None if best_record is None else best_record["iteration"]
    found = []
    for iteration, path in list_checkpoints(folder):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed meanwhile (only the newest few are kept)
        found.append(
            CheckpointInfo(
                iteration=iteration,
                path=str(path),
                size_bytes=stat.st_size,
                modified=when(stat.st_mtime),  # type: ignore[arg-type]
                best=iteration == best,
            )
        )
    found.sort(key=lambda c: c.iteration)
    return Checkpoints(run=run.id, checkpoints=found)
