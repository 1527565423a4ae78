"""The daemon's side of `python -m engine.runs.resolve --serve`: config resolution as a service.

One long-lived helper process answers line-delimited JSON, so a submit costs a round trip
rather than a Python start, and the daemon never imports engine code: requests and answers
are the pydantic models of engine.contract (standard library and pydantic only, the one
engine module the daemon may import). Requests are serialised by a lock; a helper that
died or hung is started again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TypeVar

from daemon.errors import DaemonError
from engine.contract import (
    Refused,
    ResolvedRun,
    RunRequest,
    WriteRequest,
    Written,
    parse_answer,
)

logger = logging.getLogger(__name__)

_TIMEOUT_S = 60.0
# A request line larger than this is refused by asyncio's reader: configs are far smaller.
_LINE_LIMIT = 16 * 2**20
_Answer = TypeVar("_Answer", ResolvedRun, Written)


class ResolveError(DaemonError):
    """The helper refused a request: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Resolver:
    def __init__(self, cwd: str | None = None) -> None:
        self._cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.runs.resolve",
            "--serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=self._cwd,
            limit=_LINE_LIMIT,
        )
        logger.info("config resolver started (pid %d)", self._process.pid)

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def prepare(self, request: RunRequest) -> ResolvedRun:
        """The run resolved; ResolveError when the helper says no or cannot be reached."""
        return await self._request(request, ResolvedRun)

    async def write(self, request: WriteRequest) -> Written:
        """run.toml written; ResolveError when the helper says no or cannot be reached."""
        return await self._request(request, Written)

    async def _request(
        self, request: RunRequest | WriteRequest, expected: type[_Answer]
    ) -> _Answer:
        async with self._lock:
            for attempt in (1, 2):
                try:
                    answer = await asyncio.wait_for(self._ask(request, expected), _TIMEOUT_S)
                    break
                except (OSError, EOFError, TimeoutError, ValueError) as exc:
                    logger.warning("config resolver failed (%r); restarting it", exc)
                    await self._kill()
                    if attempt == 2:
                        raise ResolveError(
                            503, f"the config resolver is not answering ({exc!r}): see daemon.log"
                        ) from None
        if isinstance(answer, Refused):
            raise ResolveError(answer.status, answer.message)
        return answer

    async def _ask(
        self, request: RunRequest | WriteRequest, expected: type[_Answer]
    ) -> _Answer | Refused:
        await self.start()
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write(request.model_dump_json().encode() + b"\n")
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise EOFError("the config resolver exited")
        # ValueError (a ValidationError is one) for a line that is no answer: restarted.
        return parse_answer(line, expected)

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
