"""The Runs screen on a daemon with seeded history: columns, filter, sort, opening a
run and its log, the mode keys and the help screen."""

from __future__ import annotations

import pytest
from textual.binding import Binding
from textual.widgets import Input

from lsdctl.tui.screens import GpusScreen, HelpScreen, ProjectsScreen, RunDetailScreen, RunsScreen
from lsdctl.tui.screens.help import all_sections
from lsdctl.tui.widgets.run_table import COLUMNS
from tests.lsdctl.tui.conftest import SIZE, app_for, screen_text, showing, until
from tests.lsdctl.tui.seed import (
    EVALUATE_DONE,
    PREDICT_RUNNING,
    SEGMENT_FAILED,
    TRAIN_DONE,
    TRAIN_INTERRUPTED,
    TRAIN_RUNNING,
    Seeded,
)

pytestmark = pytest.mark.anyio


async def test_every_run_is_listed_newest_first_with_progress_eta_loss_and_gpus(
    seeded: Seeded,
) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.loaded)
        table = screen.table
        assert table.run_ids == seeded.run_ids
        _, project, kind, state, progress, eta, loss, gpus = table.cells_of(TRAIN_RUNNING)
        assert (project, kind, state, gpus) == ("p", "train", "running", "0")
        assert progress.endswith("34%") and "█" in progress
        assert eta == "8:48"  # 6,600 iterations left at 12.5 it/s
        assert loss == "0.1221"
        assert table.cells_of(PREDICT_RUNNING)[6] == "-"  # no loss for a predict run
        assert table.cells_of(TRAIN_DONE)[5] == "-"  # no ETA once it is over
        await pilot.pause()
        text = screen_text(app)
        assert "6 runs · sorted by newest" in text
        assert f"{TRAIN_RUNNING}" in text
        # The line under the table tells why the highlighted run is where it is.
        await pilot.press("down", "down")
        assert table.selected_id() == SEGMENT_FAILED
        await pilot.pause()
        await showing(pilot, app, "block fragments-synth0:7 failed 3 times")
        # A validated run's line adds its best validation point.
        await pilot.press("down")
        assert table.selected_id() == TRAIN_DONE
        await showing(pilot, app, "done · best VOI 0.612 @ 4000 · threshold 0.55")


async def test_filter_with_slash_by_words_and_by_project_kind_and_state(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.loaded)
        await pilot.press("slash", *"state:running")
        assert screen.table.run_ids == [PREDICT_RUNNING, TRAIN_RUNNING]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert screen.table.has_focus
        assert "2 of 6 runs" in screen.query_one("#runs-status").render().plain  # type: ignore[attr-defined]
        await pilot.press("slash")
        box = screen.query_one("#filter", Input)
        assert box.has_focus
        for typed, listed in (
            ("kind:train project:p", [TRAIN_RUNNING, TRAIN_DONE, TRAIN_INTERRUPTED]),
            ("evaluate", [EVALUATE_DONE]),
            ("KIND=segment 0a0b", [SEGMENT_FAILED]),
            ("project:nope", []),
        ):
            box.value = typed
            await pilot.pause()
            assert screen.table.run_ids == listed, typed
        await pilot.press("escape")  # clears the filter
        assert screen.table.run_ids == seeded.run_ids
        assert not screen.query_one("#filter").has_class("-active")


async def test_sort_keys_and_header_clicks(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.loaded)
        await pilot.press("s")  # by state: running, queued, failed, interrupted, …
        assert screen.sort == "state"
        assert screen.table.run_ids[:3] == [PREDICT_RUNNING, TRAIN_RUNNING, SEGMENT_FAILED]
        assert screen.table.run_ids[3] == TRAIN_INTERRUPTED
        await pilot.press("s", "s", "s")  # project, kind, progress
        assert screen.sort == "progress"
        assert screen.table.run_ids[-1] == TRAIN_INTERRUPTED  # 12 %
        await pilot.press("S")
        assert screen.table.run_ids[0] == TRAIN_INTERRUPTED
        await pilot.press("s")
        assert (screen.sort, screen.reverse) == ("loss", True)
        # The mouse: a click on the LOSS header sorts by loss, a second one reverses.
        await pilot.press("s")
        assert screen.sort == "newest"
        header_x = 1 + sum(width + 2 for _, _, width in COLUMNS[:6])
        await pilot.click("#run-table", offset=(header_x, 0))
        assert (screen.sort, screen.reverse) == ("loss", False)
        assert screen.table.run_ids[:3] == [TRAIN_DONE, TRAIN_RUNNING, TRAIN_INTERRUPTED]
        await pilot.click("#run-table", offset=(header_x, 0))
        assert screen.reverse


async def test_enter_opens_the_run_and_l_its_log(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: runs.loaded)
        await pilot.press("down", "enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.run_id == TRAIN_RUNNING
        await until(pilot, lambda: detail.loaded)
        assert detail.query_one("#tabs").active == "overview"  # type: ignore[attr-defined]
        await pilot.press("escape")
        assert app.screen is runs
        await pilot.press("l")
        logs = app.screen
        assert isinstance(logs, RunDetailScreen) and logs.run_id == TRAIN_RUNNING
        await until(pilot, lambda: logs.loaded)
        assert logs.query_one("#tabs").active == "log"  # type: ignore[attr-defined]
        await showing(pilot, app, f"{TRAIN_RUNNING}: line 30 of the log")
        await pilot.press("backspace", "home")
        # The mouse: a click highlights a row, a click on the highlighted row opens it.
        await pilot.click("#run-table", offset=(3, 2))
        assert app.screen is runs and runs.table.selected_id() == TRAIN_RUNNING
        await pilot.click("#run-table", offset=(3, 2))
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.run_id == TRAIN_RUNNING


async def test_number_keys_switch_screens_and_help_lists_every_key(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: getattr(app.screen, "loaded", False))
        await pilot.press("2")
        assert isinstance(app.screen, GpusScreen)
        await pilot.press("3")
        assert isinstance(app.screen, ProjectsScreen)
        await pilot.press("1")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        # Read it all, page by page (the keys scroll it).
        help_box = app.screen.query_one("#help")
        text = screen_text(app)
        while help_box.scroll_y < help_box.max_scroll_y:
            await pilot.press("pagedown")
            text += screen_text(app)
        for title, bindings in all_sections():
            assert title in text
            for binding in bindings:
                assert isinstance(binding, Binding)
                assert binding.description in text
        descriptions = {
            getattr(b, "description", "") for _, bindings in all_sections() for b in bindings
        }
        wanted = "Cancel Resume Logs Filter Sort Smoother Save Help Quit".split()
        wanted += ["New run", "Next failed", "Open holding run", "Edit config", "New project"]
        assert set(wanted) <= descriptions
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("q")
    assert app.return_code == 0
