"""Each screen at 120×40 against the seeded daemon, compared with the accepted SVG in
__snapshots__/ (`pytest --snapshot-update` accepts a change after a look at it).

With LSDCTL_SCREENSHOTS=1 the Runs, Run detail and GPU screens are also exported to
docs/screenshots/ (the README shows them)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from lsdctl.tui.messages import RunSelected
from lsdctl.tui.widgets import BlockMap
from tests.lsdctl.tui.conftest import SIZE, app_for, until
from tests.lsdctl.tui.seed import PREDICT_RUNNING, TRAIN_DONE, TRAIN_RUNNING, Seeded

SCREENSHOTS = Path(__file__).parents[3] / "docs" / "screenshots"
Compare = Callable[..., bool]


def _export(pilot: Pilot[None], name: str) -> None:
    if os.environ.get("LSDCTL_SCREENSHOTS"):
        pilot.app.save_screenshot(filename=f"{name}.svg", path=str(SCREENSHOTS))


def _loaded() -> Callable[[Pilot[None]], Awaitable[None]]:
    async def wait(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: getattr(pilot.app.screen, "loaded", False))

    return wait


def test_runs_screen(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        await pilot.press("down")
        await pilot.pause()
        _export(pilot, "runs")

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_run_detail_of_a_training_run(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        pilot.app.post_message(RunSelected(TRAIN_RUNNING))
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == TRAIN_RUNNING)
        await _loaded()(pilot)
        await pilot.pause()
        _export(pilot, "run_detail")

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_run_detail_of_a_validated_training_run(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        pilot.app.post_message(RunSelected(TRAIN_DONE))
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == TRAIN_DONE)
        await _loaded()(pilot)
        await pilot.pause()

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_run_detail_block_map_with_a_failed_block(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        pilot.app.post_message(RunSelected(PREDICT_RUNNING))
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == PREDICT_RUNNING)
        await _loaded()(pilot)
        await until(pilot, lambda: pilot.app.screen.query_one(BlockMap).has_focus)
        await pilot.press("f")
        await pilot.pause()
        _export(pilot, "run_detail_blocks")

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_gpus_screen(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        await pilot.press("2")
        await _loaded()(pilot)
        await pilot.pause()
        _export(pilot, "gpus")

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_projects_screen(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        await pilot.press("3")
        await _loaded()(pilot)
        await until(pilot, lambda: "p" in getattr(pilot.app.screen, "reports", {}))
        await pilot.pause()

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_config_editor(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        await pilot.press("3")
        await _loaded()(pilot)
        await pilot.press("e")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfigEditorScreen")
        await pilot.pause()

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


def test_help_screen(snap_compare: Compare, seeded: Seeded) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await _loaded()(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app_for(seeded.daemon), terminal_size=SIZE, run_before=before)


@pytest.mark.skipif(not os.environ.get("LSDCTL_SCREENSHOTS"), reason="LSDCTL_SCREENSHOTS unset")
def test_the_readme_screenshots_were_exported() -> None:
    for name in ("runs", "run_detail", "run_detail_blocks", "gpus"):
        assert (SCREENSHOTS / f"{name}.svg").read_text().startswith("<svg")
