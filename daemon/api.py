"""The HTTP API (FastAPI), all under /v1; its OpenAPI schema is at /openapi.json.

Handlers are `async def` on purpose: they run on the event loop thread, the same one as
the scheduler, so every SQLite write in the daemon happens on one thread, one at a time.
Errors answer `{"detail": one line, "code": …}` with a 4xx status.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon.errors import RequestError
from daemon.gpus import Gpus
from daemon.paths import DaemonPaths
from daemon.scheduler import Scheduler
from daemon.schemas import (
    BlockMap,
    Checkpoints,
    ErrorBody,
    GpuInfo,
    GpuProcess,
    GpuReport,
    Health,
    LogChunk,
    Metrics,
    ResumeRequest,
    RunCreate,
    RunDetail,
    RunInfo,
    RunState,
    Validation,
)
from daemon.store import Store
from daemon.views import (
    block_map,
    checkpoints,
    metric_point,
    run_detail,
    run_infos,
    validation,
    when,
)
from engine.contract import LOG_FILE

logger = logging.getLogger(__name__)

_LOG_CHUNK = 256 * 1024
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request (a body that is not JSON)."},
    404: {"model": ErrorBody, "description": "No such run or project."},
    409: {"model": ErrorBody, "description": "Not possible in the run's state."},
    422: {"model": ErrorBody, "description": "Invalid request or config."},
}


def version() -> str:
    try:
        return metadata.version("lsdctl")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class DaemonState:
    paths: DaemonPaths
    store: Store
    scheduler: Scheduler
    gpus: Gpus
    started: float
    shutdown: Callable[[], None]


def create_app(state: DaemonState, lifespan: Any = None) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="lsdctl daemon",
        version=version(),
        description="Runs queued, launched and tracked for lsdctl, over a private unix socket.",
        responses=_ERRORS,
    )
    store, scheduler = state.store, state.scheduler

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(
            ErrorBody(detail=exc.message, code=exc.code).model_dump(), status_code=exc.status
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            ErrorBody(detail=str(exc.detail), code=code.get(exc.status_code, "http")).model_dump(),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        detail = "invalid request: " + "; ".join(parts)
        return JSONResponse(
            ErrorBody(detail=detail.replace("\n", " "), code="invalid").model_dump(),
            status_code=422,
        )

    @app.get("/v1/health", response_model=Health)
    async def health() -> Health:
        with store.session() as session:
            counts = store.counts_by_state(session)
        return Health(
            pid=os.getpid(),
            version=version(),
            started=when(state.started),  # type: ignore[arg-type]
            uptime_s=round(time.time() - state.started, 3),
            socket=str(state.paths.socket),
            home=str(state.paths.home),
            runs={s.value: counts.get(s.value, 0) for s in RunState},
        )

    @app.get("/v1/gpus", response_model=GpuReport)
    async def gpus() -> GpuReport:
        scan = state.gpus.scan()
        with store.session() as session:
            holders = store.gpu_holders(session)
        return GpuReport(
            available=scan.available,
            reason=scan.reason,
            gpus=[
                GpuInfo(
                    index=g.index,
                    name=g.name,
                    memory_total_mb=g.memory_total_mb,
                    memory_used_mb=g.memory_used_mb,
                    utilization_pct=g.utilization_pct,
                    temperature_c=g.temperature_c,
                    power_w=g.power_w,
                    processes=[
                        GpuProcess(pid=p.pid, used_memory_mb=p.used_memory_mb) for p in g.processes
                    ],
                    held_by=[run_id for run_id, _ in holders.get(g.index, [])],
                )
                for g in scan.gpus
            ],
        )

    @app.post("/v1/runs", response_model=RunInfo, status_code=201)
    async def submit(body: RunCreate) -> RunInfo:
        run = await scheduler.submit(body)
        with store.session() as session:
            return run_infos(store, session, [run])[0]

    @app.get("/v1/runs", response_model=list[RunInfo])
    async def list_runs(
        project: Annotated[str | None, Query(max_length=4096)] = None,
        state: RunState | None = None,
        kind: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=0, le=100_000, description="0: all")] = 50,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> list[RunInfo]:
        """Runs, newest first."""
        with store.session() as session:
            rows = store.runs(session, project, state.value if state else None, kind, limit, offset)
            return run_infos(store, session, rows)

    @app.get("/v1/runs/{run_id}", response_model=RunDetail)
    async def show(run_id: str) -> RunDetail:
        with store.session() as session:
            return run_detail(store, session, scheduler.get_run(session, run_id))

    @app.get("/v1/runs/{run_id}/metrics", response_model=Metrics)
    async def metrics(
        run_id: str,
        name: Annotated[str | None, Query(max_length=200)] = None,
        since_step: Annotated[int | None, Query(ge=-1, le=2**62)] = None,
        limit: Annotated[int, Query(ge=0, le=10**7, description="0: all")] = 0,
    ) -> Metrics:
        """Metric points in step order (each attempt's, when a resumed run repeats steps)."""
        with store.session() as session:
            run = scheduler.get_run(session, run_id)
            assert run.seq is not None
            rows = store.metrics(session, run.seq, name, since_step, limit)
            return Metrics(run=run.id, points=[metric_point(r) for r in rows])

    @app.get("/v1/runs/{run_id}/validation", response_model=Validation)
    async def list_validation(run_id: str) -> Validation:
        """The run's validation points in step order (a step validated again by a resumed
        attempt: its latest scores), the one with the lowest VOI marked best."""
        with store.session() as session:
            return validation(store, session, scheduler.get_run(session, run_id))

    @app.get("/v1/runs/{run_id}/blocks", response_model=BlockMap)
    async def blocks(
        run_id: str, task: Annotated[str | None, Query(max_length=4096)] = None
    ) -> BlockMap:
        """The block grid of each blockwise task of the run, with every started block's
        state (pending blocks are the rest) and the error of each failed one."""
        with store.session() as session:
            return block_map(store, session, scheduler.get_run(session, run_id), task)

    @app.get("/v1/runs/{run_id}/checkpoints", response_model=Checkpoints)
    async def list_checkpoints(run_id: str) -> Checkpoints:
        """The checkpoints kept in the run directory, oldest first."""
        with store.session() as session:
            run = scheduler.get_run(session, run_id)
        return checkpoints(run)

    @app.get("/v1/runs/{run_id}/log", response_model=LogChunk)
    async def log(run_id: str, offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> LogChunk:
        """Up to 256 KiB of the run's log.txt from byte `offset`."""
        with store.session() as session:
            run = scheduler.get_run(session, run_id)
        data = b""
        try:
            with (Path(run.run_dir) / LOG_FILE).open("rb") as f:
                f.seek(offset)
                data = f.read(_LOG_CHUNK)
        except FileNotFoundError:
            pass
        return LogChunk(
            run=run.id,
            offset=offset,
            next_offset=offset + len(data),
            text=data.decode(errors="replace"),
            finished=RunState(run.state).terminal and len(data) < _LOG_CHUNK,
        )

    @app.post("/v1/runs/{run_id}/cancel", response_model=RunInfo)
    async def cancel(run_id: str) -> RunInfo:
        run = scheduler.cancel(run_id)
        with store.session() as session:
            return run_infos(store, session, [run])[0]

    @app.post("/v1/runs/{run_id}/resume", response_model=RunInfo)
    async def resume(run_id: str, body: ResumeRequest | None = None) -> RunInfo:
        run = scheduler.resume(run_id, body.iterations if body else None)
        with store.session() as session:
            return run_infos(store, session, [run])[0]

    @app.post("/v1/runs/{run_id}/release", response_model=RunInfo)
    async def release(run_id: str) -> RunInfo:
        """Let a held run start."""
        run = scheduler.release(run_id)
        with store.session() as session:
            return run_infos(store, session, [run])[0]

    @app.post("/v1/shutdown", status_code=202)
    async def shutdown() -> dict[str, str]:
        """Stop the daemon; runs keep running and are re-attached by the next daemon."""
        state.shutdown()
        return {"detail": "shutting down"}

    return app
