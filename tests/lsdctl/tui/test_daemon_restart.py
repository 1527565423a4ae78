"""The daemon killed (-9) under a running TUI: a banner, polling goes on; the daemon
started again: the banner goes and the screens fill again. Nothing crashes."""

from __future__ import annotations

import pytest

from daemon.schemas import RunCreate
from lsdctl.tui.screens import RunsScreen
from lsdctl.tui.widgets import DaemonBanner
from tests.daemon.conftest import DaemonMaker
from tests.lsdctl.tui.conftest import SIZE, app_for, screen_text, showing, until

pytestmark = pytest.mark.anyio


async def test_a_banner_while_the_daemon_is_down_then_recovery(make_daemon: DaemonMaker) -> None:
    daemon = make_daemon()
    with daemon.client() as client:
        held = client.submit(
            RunCreate(kind="train", project=str(daemon.projects / "p"), hold=True)
        ).id
    app = app_for(daemon, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.table.run_ids == [held])
        banner = screen.query_one(DaemonBanner)
        assert not banner.has_class("-down")

        daemon.kill9()  # the harder case: its socket file stays behind
        await until(pilot, lambda: banner.has_class("-down"), what="the banner")
        await pilot.pause()
        said = str(banner.render())
        assert "daemon unreachable" in said and "`lsdctl daemon start` starts it" in said
        assert "retrying every 0.2 s" in said
        await showing(pilot, app, "daemon unreachable")
        assert screen.table.run_ids == [held]  # what was shown stays
        # Other screens say so too, and keys work while it is down.
        await pilot.press("2")
        await pilot.pause()
        await showing(pilot, app, "daemon unreachable")
        await pilot.press("1")

        daemon.start()
        await until(pilot, lambda: app.daemon_error is None, what="recovery")
        await pilot.pause()
        assert not banner.has_class("-down")
        await until(pilot, lambda: "daemon unreachable" not in screen_text(app))

        with daemon.client() as client:
            client.cancel(held)
        await until(pilot, lambda: screen.table.cells_of(held)[3] == "cancelled")
