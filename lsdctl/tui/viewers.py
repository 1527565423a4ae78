"""Viewers the TUI started (`v`): one `python -m lsdctl.view` process per run.

A process of its own keeps neuroglancer's server threads and the data server out of the
UI's process; the TUI only waits (asynchronously) for the URL line. Pressing `v` again
on the same run gives the same viewer; all of them stop when the app exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass

from lsdctl.errors import LsdctlError, UsageError

# Starting Python, neuroglancer and the plan takes a few seconds on a busy machine.
START_TIMEOUT_S = 60.0


@dataclass
class _Viewer:
    process: asyncio.subprocess.Process
    url: str
    drain: asyncio.Task[bytes]
    """Reads what the viewer logs, so that a full pipe never blocks it."""


class Viewers:
    """Start (`open`) and stop (`close`) viewer processes."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._running: dict[str, _Viewer] = {}

    def url(self, run_id: str) -> str | None:
        """The URL of the run's viewer, while it runs."""
        viewer = self._running.get(run_id)
        if viewer is None or viewer.process.returncode is not None:
            return None
        return viewer.url

    async def open(self, project_path: str, run_id: str) -> str:
        """The URL of a viewer of `run_id` (started unless one runs already).

        UsageError with the viewer's one-line reason when it shows nothing (an unknown
        run, a run without outputs); LsdctlError when it does not start in time.
        """
        running = self.url(run_id)
        if running is not None:
            return running
        process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "lsdctl.view",
            project_path,
            run_id,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            await _stop(process)
            raise LsdctlError(
                f"the viewer of {run_id} did not start within {START_TIMEOUT_S:.0f} s"
            ) from None
        url = line.decode().strip()
        if not url.startswith("http"):
            error = (await process.stderr.read()).decode().strip().splitlines()
            await _stop(process)
            reason = error[-1].removeprefix("error: ") if error else "it exited"
            raise UsageError(f"cannot view {run_id}: {reason}")
        self._running[run_id] = _Viewer(process, url, asyncio.create_task(process.stderr.read()))
        return url

    async def close(self) -> None:
        running, self._running = self._running, {}
        for viewer in running.values():
            await _stop(viewer.process)
            viewer.drain.cancel()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
