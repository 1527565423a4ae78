"""What the TUI needs of a daemon client: lsdctl.client.AsyncDaemonClient, or a fake."""

from __future__ import annotations

from typing import Protocol

from daemon.paths import DaemonPaths
from daemon.schemas import (
    BlockMap,
    Checkpoints,
    GpuReport,
    Health,
    LogChunk,
    Metrics,
    RunCreate,
    RunDetail,
    RunInfo,
)


class TuiClient(Protocol):
    paths: DaemonPaths

    async def health(self) -> Health: ...
    async def gpus(self) -> GpuReport: ...
    async def runs(
        self,
        project: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunInfo]: ...
    async def run(self, run_id: str) -> RunDetail: ...
    async def metrics(
        self, run_id: str, name: str | None = None, since_step: int | None = None
    ) -> Metrics: ...
    async def log(self, run_id: str, offset: int = 0) -> LogChunk: ...
    async def blocks(self, run_id: str, task: str | None = None) -> BlockMap: ...
    async def checkpoints(self, run_id: str) -> Checkpoints: ...
    async def submit(self, request: RunCreate) -> RunInfo: ...
    async def cancel(self, run_id: str) -> RunInfo: ...
    async def resume(self, run_id: str, iterations: int | None = None) -> RunInfo: ...
    async def aclose(self) -> None: ...
