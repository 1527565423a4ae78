"""`v` on a run (Runs screen, Run detail): the viewer starts for that run and its URL is
shown; a run with nothing to show says why in one line."""

from __future__ import annotations

import pytest

from lsdctl.tui import LsdctlApp
from lsdctl.tui.screens import RunDetailScreen, RunsScreen
from lsdctl.tui.viewers import Viewers
from tests.lsdctl.tui.conftest import SIZE, app_for, showing, until
from tests.lsdctl.tui.seed import SEGMENT_FAILED, TRAIN_DONE, Seeded

pytestmark = pytest.mark.anyio


def notified(app: LsdctlApp) -> list[str]:
    return [n.message for n in app._notifications]


class FakeViewers(Viewers):
    """Answers at once with a URL per run, and remembers what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[str, str]] = []
        self.urls: dict[str, str] = {}

    def url(self, run_id: str) -> str | None:
        return self.urls.get(run_id)

    async def open(self, project_path: str, run_id: str) -> str:
        self.opened.append((project_path, run_id))
        self.urls[run_id] = f"http://127.0.0.1:9/v/{len(self.opened)}/"
        return self.urls[run_id]


async def test_v_on_a_run_starts_its_viewer_and_shows_the_url(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)
    fake = app.viewers = FakeViewers()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.loaded)
        while screen.table.selected_id() != TRAIN_DONE:
            await pilot.press("down")
        await pilot.press("v")
        await until(pilot, lambda: fake.opened, what="the viewer to be asked for")
        project_path, run_id = fake.opened[0]
        assert run_id == TRAIN_DONE and project_path.endswith("/p")
        # In a notification, and on the line under the table while it runs.
        await showing(pilot, app, "viewer http://127.0.0.1:9/v/1/")
        assert f"viewer of {TRAIN_DONE}: http://127.0.0.1:9/v/1/" in notified(app)
        # In the run's detail too.
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.loaded)
        await pilot.press("v")
        await until(pilot, lambda: len(fake.opened) == 2)
        assert fake.opened[1][1] == TRAIN_DONE


async def test_v_on_a_run_with_nothing_to_show_says_why(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)  # real viewer processes: `python -m lsdctl.view`
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.loaded)
        while screen.table.selected_id() != SEGMENT_FAILED:
            await pilot.press("down")
        await pilot.press("v")
        await until(
            pilot,
            lambda: any(f"cannot view {SEGMENT_FAILED}: " in m for m in notified(app)),
            timeout=60,
            what="the reason the viewer did not start",
        )
        reason = next(m for m in notified(app) if "cannot view" in m)
        assert f"no run '{SEGMENT_FAILED}' in project p" in reason and "\n" not in reason
        assert app.viewers.url(SEGMENT_FAILED) is None
