"""A real training run of the tiny project, started from the new-run form and followed
in Run detail as it trains: the loss curve fills, checkpoints appear, it succeeds."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from daemon.schemas import RunState
from lsdctl.tui.screens import RunDetailScreen, RunsScreen
from lsdctl.tui.screens.dialogs import NewRunDialog
from lsdctl.tui.widgets import LogTail, LossChart
from tests.daemon.conftest import DaemonMaker
from tests.lsdctl.tui.conftest import SIZE, app_for, until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_run_started_from_the_form_trains_live_in_run_detail(
    make_daemon: DaemonMaker,
) -> None:
    daemon = make_daemon()
    app = app_for(daemon, interval=0.3)
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: runs.loaded)
        await pilot.press("n")
        assert isinstance(app.screen, NewRunDialog)
        await pilot.press("ctrl+s")  # train, project p, its own config, one worker
        await until(pilot, lambda: runs.table.row_count == 1, what="the new run")
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        await until(
            pilot,
            lambda: detail.detail is not None and detail.detail.state.terminal,
            timeout=90,
            what="the run to finish",
        )
        # One more refresh after the end, for what the last events said.
        await detail.refresh_data().wait()
        run = detail.detail
        assert run is not None and run.state == RunState.SUCCEEDED, run.error
        chart = detail.query_one(LossChart)
        assert chart.count == 6  # one loss per iteration
        assert chart.summary() is not None
        assert run.progress_done == run.progress_total == 6
        table = detail.query_one("#checkpoint-table", DataTable)
        assert table.row_count >= 1
        assert table.get_row_at(0)[0] == "6"  # the last one first
        assert detail.query_one("#full-log", LogTail).line_count > 0
        assert run.config["train"]["iterations"] == 6
