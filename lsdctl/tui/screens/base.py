"""A screen that refreshes itself from the daemon while it is shown.

`set_interval` ticks start one poll at a time (a slow daemon never piles them up); the
poll is an exclusive async worker, so a refresh the user asks for replaces (cancels) a
running one, whose result is then never applied.
The daemon not answering is the app's business (banner, retry on the next tick); a
request the daemon refuses (a run that is gone) is the screen's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker

from daemon.schemas import RunInfo
from lsdctl.errors import LsdctlError, UsageError
from lsdctl.tui.messages import DaemonLost, DaemonReached
from lsdctl.tui.screens.dialogs import ConfirmDialog

if TYPE_CHECKING:
    from lsdctl.tui.app import LsdctlApp
    from lsdctl.tui.protocol import TuiClient


class TuiScreen(Screen[None]):
    """A screen of the lsdctl app: typed access to the app and its client."""

    @property
    def tui(self) -> LsdctlApp:
        return cast("LsdctlApp", self.app)

    @property
    def client(self) -> TuiClient:
        return self.tui.client


class PollingScreen(TuiScreen):
    """Subclasses fetch (awaiting the client) and apply (on the UI thread)."""

    def __init__(self, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self._timer: Timer | None = None
        self._poll: Worker[Any] | None = None
        self.loaded = False
        self.apply_seconds: float | None = None

    async def fetch(self) -> Any:
        raise NotImplementedError

    def apply(self, data: Any) -> None:
        raise NotImplementedError

    def refused(self, error: UsageError) -> None:
        """The daemon refused a request of this screen (say, its run is gone)."""
        self.notify(str(error), severity="error")

    def on_screen_resume(self) -> None:
        if self._timer is None:
            self._timer = self.set_interval(self.tui.interval, self._tick)
        else:
            self._timer.resume()
        self.refresh_data()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def _tick(self) -> None:
        if self._poll is None or self._poll.is_finished:
            self.refresh_data()

    def refresh_data(self) -> Worker[Any]:
        self._poll = worker = self._refresh()
        return worker

    @work(exclusive=True, group="poll")
    async def _refresh(self) -> None:
        try:
            data = await self.fetch()
        except UsageError as exc:
            self.tui.post_message(DaemonReached())
            if self.is_attached:
                self.refused(exc)
            return
        except LsdctlError as exc:
            self.tui.post_message(DaemonLost(str(exc)))
            return
        if self.tui.daemon_error is not None:
            self.tui.post_message(DaemonReached())
        if not self.is_attached:
            # Popped while the request was in flight: its widgets are gone, and querying
            # them would fail the worker and with it the app.
            return
        # CPU time of this (the UI) thread: what a refresh takes from input handling,
        # whatever else the machine is busy with.
        start = time.thread_time()
        self.apply(data)
        self.apply_seconds = time.thread_time() - start
        self.loaded = True


class RunActionsScreen(PollingScreen):
    """Cancel (after a yes) and resume: the same on the runs list and a run's detail."""

    def cancel_run(self, run: RunInfo) -> None:
        if run.state.terminal:
            self.notify(f"run {run.id} is {run.state.value}: nothing to cancel", timeout=3)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act("cancel", run.id)

        self.app.push_screen(
            ConfirmDialog(f"Cancel run {run.id} ({run.kind}, {run.state.value})?"), confirmed
        )

    def resume_run(self, run: RunInfo) -> None:
        self._act("resume", run.id)

    def view_run(self, run: RunInfo) -> None:
        """Start (or find) the run's neuroglancer viewer and show its URL."""
        running = self.tui.viewers.url(run.id)
        if running is None:
            self.notify(f"starting a viewer of {run.id}…", timeout=3)
        self._view(run)

    @work(group="view")
    async def _view(self, run: RunInfo) -> None:
        try:
            url = await self.tui.viewers.open(run.project_path, run.id)
        except LsdctlError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.app.copy_to_clipboard(url)  # where the terminal lets programs do so
        self.notify(f"viewer of {run.id}: {url}", title="neuroglancer", timeout=60)
        self.viewer_started(run.id, url)

    def viewer_started(self, run_id: str, url: str) -> None:
        """A viewer of `run_id` runs at `url` (screens that list runs say so)."""

    @work(group="act")
    async def _act(self, what: str, run_id: str) -> None:
        try:
            if what == "cancel":
                run = await self.client.cancel(run_id)
            else:
                run = await self.client.resume(run_id)
        except LsdctlError as exc:
            self.notify(str(exc), severity="error", timeout=6)
            return
        self.notify(f"{run.id}: {run.reason or run.state.value}", timeout=4)
        self.refresh_data()
