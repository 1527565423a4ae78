"""Rows to wire models: what RunInfo, RunDetail and MetricPoint are made of."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from daemon.schemas import Attempt, MetricPoint, RunDetail, RunInfo, RunState
from daemon.store import Store
from daemon.tables import AttemptRow, MetricRow, ProjectRow, RunRow


def when(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def indices(text: str) -> list[int]:
    return [int(i) for i in text.split(",") if i]


def _eta(run: RunRow) -> float | None:
    if run.state != RunState.RUNNING or not run.rate or run.progress_total is None:
        return None
    return max(run.progress_total - (run.progress_done or 0), 0) / run.rate


def run_info(run: RunRow, project: ProjectRow, after: list[str]) -> RunInfo:
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
        parent=run.parent,
        after=after,
        run_dir=run.run_dir,
    )


def run_infos(store: Store, session: Session, runs: Sequence[RunRow]) -> list[RunInfo]:
    projects = store.projects_by_id(session, (r.project_id for r in runs))
    after = store.dependency_ids(session, (r.seq for r in runs if r.seq is not None))
    return [run_info(r, projects[r.project_id], after.get(r.seq or 0, [])) for r in runs]


def metric_point(row: MetricRow) -> MetricPoint:
    return MetricPoint(name=row.name, step=row.step, value=row.value, attempt=row.attempt, t=row.t)


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
    )
