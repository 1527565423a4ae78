"""Keys that change runs, against a daemon of their own: cancel (after a yes), resume,
the new-run form (a refusal shown in the form, then a run submitted), and the GPU
screen of a machine without an NVIDIA GPU.

The seeded runs that stand running hold this daemon's one CPU slot, so what these tests
submit or resume stays queued and never trains."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Select, Static

from daemon.schemas import RunCreate, RunState
from lsdctl.tui.messages import RunSelected
from lsdctl.tui.screens import GpusScreen, RunDetailScreen, RunsScreen
from lsdctl.tui.screens.dialogs import ConfirmDialog, NewRunDialog
from tests.daemon.conftest import DaemonMaker
from tests.lsdctl.tui.conftest import SIZE, app_for, screen_text, showing, until
from tests.lsdctl.tui.seed import TRAIN_INTERRUPTED, Seeded, seed_history

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, template_project: Path) -> Iterator[Seeded]:
    """A daemon of this module's, seeded; each test cancels what it started."""
    maker = DaemonMaker(tmp_path_factory.mktemp("busy"), template_project)
    daemon = maker(start=False, LSDCTL_POLL_S="0.5")
    seeded = seed_history(daemon)
    daemon.start()
    yield seeded
    seeded.stop()
    maker.reap()


async def _runs_screen(app: object, pilot: object) -> RunsScreen:
    screen = app.screen  # type: ignore[attr-defined]
    assert isinstance(screen, RunsScreen)
    await until(pilot, lambda: screen.loaded)  # type: ignore[arg-type]
    return screen


async def test_c_cancels_after_a_yes_and_r_resumes(busy: Seeded) -> None:
    daemon = busy.daemon
    with daemon.client() as client:
        held = client.submit(
            RunCreate(kind="train", project=str(daemon.projects / "p"), hold=True)
        ).id
    app = app_for(daemon, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _runs_screen(app, pilot)
        await until(pilot, lambda: held in screen.table.run_ids)
        assert screen.table.selected_id() == held  # the newest, on top
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # no: nothing happens
        assert app.screen is screen
        with daemon.client() as client:
            assert client.run(held).state == RunState.QUEUED
        await pilot.press("c", "y")
        await until(pilot, lambda: screen.table.cells_of(held)[3] == "cancelled")
        with daemon.client() as client:
            assert client.run(held).reason == "cancelled before it started"
        await pilot.press("c")  # over already: says so, asks nothing
        assert app.screen is screen

        await pilot.press("r")
        await until(pilot, lambda: screen.table.cells_of(held)[3] == "queued")
        with daemon.client() as client:
            assert client.run(held).state == RunState.QUEUED
        # An interrupted run resumes the same way (here it waits for the CPU slot).
        screen.action_clear_filter()
        await pilot.press("slash", *"2e2f", "enter")
        assert screen.table.selected_id() == TRAIN_INTERRUPTED
        await pilot.press("r")
        await until(pilot, lambda: screen.table.cells_of(TRAIN_INTERRUPTED)[3] == "queued")
        # A refusal is shown, not raised: a queued run has nothing to resume.
        await pilot.press("r")
        await until(
            pilot, lambda: any("nothing to resume" in n.message for n in app._notifications)
        )
    with daemon.client() as client:
        client.cancel(held)
        client.cancel(TRAIN_INTERRUPTED)


async def test_c_and_r_work_on_a_run_s_detail_too(busy: Seeded) -> None:
    daemon = busy.daemon
    with daemon.client() as client:
        held = client.submit(
            RunCreate(kind="train", project=str(daemon.projects / "p"), hold=True)
        ).id
    app = app_for(daemon, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await _runs_screen(app, pilot)
        app.post_message(RunSelected(held))
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        await until(pilot, lambda: detail.loaded)
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await until(pilot, lambda: detail.detail is not None and detail.detail.state == "cancelled")
        await pilot.press("r")
        await until(pilot, lambda: detail.detail is not None and detail.detail.state == "queued")
        await showing(pilot, app, "waiting for a CPU slot")
    with daemon.client() as client:
        client.cancel(held)


async def test_n_submits_a_run_from_the_form_and_shows_refusals_in_it(busy: Seeded) -> None:
    daemon = busy.daemon
    app = app_for(daemon, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _runs_screen(app, pilot)
        before = set(screen.table.run_ids)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewRunDialog)
        assert form.query_one("#project", Select).value == str((daemon.projects / "p").absolute())
        # No trained checkpoint of this project exists: the daemon refuses a predict run.
        form.query_one("#kind", Select).value = "predict"
        await pilot.press("ctrl+s")
        note = form.query_one("#form-error", Static)
        await until(pilot, lambda: note.has_class("-shown"))
        assert "checkpoint" in str(note.render()).lower()
        assert app.screen is form
        # Bad workers are caught in the form.
        form.query_one("#kind", Select).value = "train"
        form.query_one("#workers").value = "0"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "at least 1" in str(note.render())
        form.query_one("#workers").value = "2"  # type: ignore[attr-defined]
        await pilot.click("#submit")
        await until(pilot, lambda: app.screen is screen)
        await until(pilot, lambda: len(set(screen.table.run_ids) - before) == 1)
        (new,) = set(screen.table.run_ids) - before
        assert new.startswith("train-")
        assert screen.table.cells_of(new)[3] == "queued"
        with daemon.client() as client:
            run = client.run(new)
            assert run.state == RunState.QUEUED and run.config["train"]["iterations"] == 6
            client.cancel(new)
        # Escape leaves the form without submitting anything.
        await pilot.press("n")
        assert isinstance(app.screen, NewRunDialog)
        await pilot.press("escape")
        assert app.screen is screen


async def test_the_gpu_screen_says_plainly_when_there_is_no_nvidia_gpu(busy: Seeded) -> None:
    app = app_for(busy.daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, GpusScreen)
        await until(pilot, lambda: screen.loaded)
        await pilot.pause()
        assert screen.has_class("-none")
        text = screen_text(app)
        assert "No NVIDIA GPU found" in text
        assert "NVIDIA driver library not loaded" in text
        assert "Runs use the CPU" in text
