"""Run detail on seeded history: the loss curve with smoothing and min/last, throughput
and ETA, the validation curve with its best point (and how it follows a running run),
the block map (keys and mouse, a failed block's error), the tabs, the resolved config
and the checkpoints."""

from __future__ import annotations

import json

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TabbedContent

from engine.contract import EventWriter
from lsdctl.tui import LsdctlApp
from lsdctl.tui.messages import RunSelected
from lsdctl.tui.screens import RunDetailScreen
from lsdctl.tui.widgets import BlockMap, LossChart, ValidationChart
from lsdctl.tui.widgets.validation_chart import BEST_MARK
from tests.daemon.conftest import DaemonMaker
from tests.lsdctl.tui.conftest import SIZE, app_for, screen_text, showing, until
from tests.lsdctl.tui.seed import (
    BLOCK_ERROR,
    EVALUATE_DONE,
    PREDICT_RUNNING,
    SEGMENT_FAILED,
    TRAIN_DONE,
    TRAIN_RUNNING,
    VALIDATION,
    Seeded,
    loss_curve,
    seed_history,
    validation_event,
)

pytestmark = pytest.mark.anyio


def _text(screen: RunDetailScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def _open(
    app: LsdctlApp, pilot: Pilot[None], run_id: str, tab: str = "overview", loaded: bool = True
) -> RunDetailScreen:
    app.post_message(RunSelected(run_id, tab))
    await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
    screen = app.screen
    assert isinstance(screen, RunDetailScreen)
    if loaded:
        await until(pilot, lambda: screen.loaded)
    return screen


async def test_a_train_run_shows_its_loss_curve_throughput_eta_config_and_checkpoints(
    seeded: Seeded,
) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot, TRAIN_RUNNING)
        chart = screen.query_one(LossChart)
        curve = loss_curve(3400, 20, seed=1.0)
        assert chart.count == len(curve)
        last, lowest, at = chart.summary()  # type: ignore[misc]
        assert last == pytest.approx(curve[-1][1])
        assert (lowest, at) == min((v, s) for s, v in curve)
        await pilot.pause()
        text = screen_text(app)
        assert "34%  3400/10000  ETA 8:48  throughput 12.5 it/s" in text
        assert f"last {last:.4f}" in text and f"min {lowest:.4f} @ {at}" in text
        assert "smoothing 0.60" in text
        await pilot.press("plus", "plus")
        assert chart.smoothing == 0.8
        await pilot.press(*["minus"] * 9)
        assert chart.smoothing == 0.0  # never below none
        await pilot.pause()
        await showing(pilot, app, "smoothing 0.00")
        # The log tail under the curve.
        await showing(pilot, app, f"{TRAIN_RUNNING}: line 30 of the log")

        await pilot.press("C")
        assert screen.query_one("#tabs", TabbedContent).active == "config"
        config = _text(screen, "#config-text")
        assert "[model]" in config and "input_shape = [20, 20, 20]" in config
        assert "# inputs" in config and "train/synth0.zarr" in config
        await pilot.press("K")
        assert screen.query_one("#tabs", TabbedContent).active == "checkpoints"
        assert screen.query_one("#checkpoint-table", DataTable).row_count == 0  # none yet
        await pilot.press("l")
        assert screen.query_one("#tabs", TabbedContent).active == "log"
        await pilot.press("o")
        assert screen.query_one("#tabs", TabbedContent).active == "overview"

        await pilot.press("escape")
        done = await _open(app, pilot, TRAIN_DONE, tab="checkpoints")
        table = done.query_one("#checkpoint-table", DataTable)
        assert [table.get_row_at(i)[:3] for i in range(table.row_count)] == [
            ["6000", "checkpoint_00006000.pt", "12.0 KiB"],
            ["4000", "checkpoint_00004000.pt", "8.0 KiB"],
            ["2000", "checkpoint_00002000.pt", "4.0 KiB"],
        ]


def _best_mark(chart: ValidationChart) -> tuple[int, int]:
    """(row, column) of the best point's mark in the chart as drawn."""
    lines = chart.render().plain.splitlines()
    (found,) = [(row, line.index(BEST_MARK)) for row, line in enumerate(lines) if BEST_MARK in line]
    return found


async def test_a_validated_run_shows_its_validation_curve_beside_the_loss_with_the_best_marked(
    seeded: Seeded,
) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot, TRAIN_DONE)
        chart = screen.query_one(ValidationChart)
        loss = screen.query_one(LossChart)
        await pilot.pause()
        assert screen.has_class("-validated") and chart.display
        assert [(p.step, p.voi, p.threshold) for p in chart.points] == VALIDATION
        assert chart.best is not None
        assert (chart.best.step, chart.best.voi, chart.best.threshold) == (4000, 0.612, 0.55)
        # Beside the loss curve, the same height, to its right.
        assert chart.region.y == loss.region.y and chart.region.x > loss.region.right - 1
        assert chart.region.height == loss.region.height > 10

        text = screen_text(app)
        assert "validation: best VOI 0.612 @ 4000 · threshold 0.55" in text
        assert f"{BEST_MARK} 0.612 @ 4000" in text  # the label beside the mark
        assert "loss 0.0770 @ 6000  best VOI 0.612 @ 4000" in _text(screen, "#summary")
        # The mark sits on the lowest row of the plot (the lowest VOI), at step 4000 of
        # the 1000…6000 axis.
        lines = chart.render().plain.splitlines()
        row, column = _best_mark(chart)
        axis_row = next(i for i, line in enumerate(lines) if "└" in line)
        assert row == axis_row - 1
        plot_left = lines[1].index("┤") + 1
        plot_width = len(lines[axis_row]) - lines[axis_row].index("└") - 1
        assert column - plot_left == round(3 / 5 * (2 * plot_width - 1)) // 2
        assert lines[-1].split() == ["1000", "6000"]

        # The best validation's checkpoint is marked in the checkpoints tab.
        await pilot.press("K")
        table = screen.query_one("#checkpoint-table", DataTable)
        assert [(row[0], row[4]) for row in map(table.get_row_at, range(table.row_count))] == [
            ("6000", ""),
            ("4000", BEST_MARK),
            ("2000", ""),
        ]

        # A training run that never validated has no validation panel: the loss curve
        # takes the width.
        await pilot.press("escape")
        plain = await _open(app, pilot, TRAIN_RUNNING)
        await pilot.pause()
        assert not plain.has_class("-validated")
        assert not plain.query_one(ValidationChart).display
        assert plain.query_one(LossChart).region.width > SIZE[0] - 4


async def test_the_validation_curve_follows_a_running_run(make_daemon: DaemonMaker) -> None:
    daemon = make_daemon(start=False, LSDCTL_POLL_S="0.1")
    seeded = seed_history(daemon)
    daemon.start()
    events = daemon.projects / "p" / "runs" / TRAIN_RUNNING / "events.jsonl"

    def write(*points: tuple[int, float, float]) -> None:
        with events.open("a") as f:
            for point in points:
                f.write(json.dumps(validation_event(*point)) + "\n")

    try:
        app = app_for(daemon, interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open(app, pilot, TRAIN_RUNNING)
            chart = screen.query_one(ValidationChart)
            assert not screen.has_class("-validated")
            write((1000, 0.9, 0.5), (2000, 0.7, 0.5))
            await until(pilot, lambda: len(chart.points) == 2, what="two validation points")
            assert screen.has_class("-validated")
            assert chart.best is not None and chart.best.step == 2000
            await showing(pilot, app, "validation: best VOI 0.700 @ 2000 · threshold 0.50")
            # A new best moves the mark to the newest point; a resumed attempt's repeat of
            # step 3000 (worse now) moves it back to the middle of the 1000…3000 axis.
            write((3000, 0.55, 0.6))
            await showing(pilot, app, "validation: best VOI 0.550 @ 3000 · threshold 0.60")
            newest = _best_mark(chart)
            write((3000, 0.8, 0.6))
            await showing(pilot, app, "validation: best VOI 0.700 @ 2000 · threshold 0.50")
            assert _best_mark(chart)[1] < newest[1]
            assert [(p.step, p.voi) for p in chart.points] == [
                (1000, 0.9),
                (2000, 0.7),
                (3000, 0.8),
            ]
    finally:
        seeded.stop()


async def test_the_share_of_time_waiting_for_batches_shows_beside_the_loss(
    make_daemon: DaemonMaker,
) -> None:
    daemon = make_daemon(start=False, LSDCTL_POLL_S="0.1")
    seeded = seed_history(daemon)
    daemon.start()
    # The engine's writer, into the running run's events.jsonl the daemon tails.
    events = EventWriter(daemon.projects / "p" / "runs" / TRAIN_RUNNING / "events.jsonl")
    try:
        app = app_for(daemon, interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open(app, pilot, TRAIN_RUNNING)
            assert "data wait" not in _text(screen, "#summary")
            events.metric(3410, "loss", 0.125)
            events.metric(3410, "data_wait", 0.625)
            await until(
                pilot,
                lambda: "loss 0.1250 @ 3410  data wait 62%" in _text(screen, "#summary"),
                what="data wait beside the loss",
            )
    finally:
        events.close()
        seeded.stop()


async def test_the_block_map_colours_blocks_and_shows_the_error_of_a_failed_one(
    seeded: Seeded,
) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot, PREDICT_RUNNING)
        blocks = screen.query_one(BlockMap)
        await until(pilot, lambda: blocks.has_focus)
        assert [t.task for t in blocks.tasks] == ["predict-synth0", "predict-synth1"]
        task = blocks.current_task
        assert task is not None
        assert task.counts == {"pending": 5, "running": 2, "done": 16, "skipped": 0, "failed": 1}
        await pilot.pause()
        text = screen_text(app)
        assert "░ pending 5  ▒ running 2  █ done 16  X failed 1" in text
        assert "0.8 blocks/s" in text and "31/48" in text and "ETA 0:21" in text

        # Keys: f jumps to the failed block, whose traceback shows beside the map.
        await pilot.press("f")
        assert blocks.cursor == (0, 1, 3)
        await pilot.pause()
        info = _text(screen, "#block-info")
        assert "predict-synth0:7" in info and "failed" in info
        assert BLOCK_ERROR.splitlines()[-1] in info
        await pilot.press("right_square_bracket")  # the next z slice
        assert blocks.cursor == (1, 1, 3)
        await pilot.press("left", "up")
        assert blocks.cursor == (1, 0, 2)
        await pilot.pause()
        assert "predict-synth0:14" in _text(screen, "#block-info")  # 12 + 0*4 + 2
        assert "done · worker 0 · 1.25 s" in _text(screen, "#block-info")
        await pilot.press("down")
        await pilot.pause()
        assert "predict-synth0:18" in _text(screen, "#block-info")
        assert "running" in _text(screen, "#block-info")
        await pilot.press("down", "right")
        await pilot.pause()
        assert "predict-synth0:23" in _text(screen, "#block-info")
        assert "pending" in _text(screen, "#block-info")
        await pilot.press("t")  # the second task
        assert blocks.current_task is not None
        assert blocks.current_task.task == "predict-synth1"
        # The mouse: a click on a cell selects it (z 0 starts at column 0, row 2).
        await pilot.click(BlockMap, offset=(2, 3))  # x 1, y 1 of slice z 0
        assert blocks.cursor == (0, 1, 1)
        await pilot.pause()
        assert "predict-synth1:5" in _text(screen, "#block-info")


async def test_a_failed_segment_run_says_why_and_an_evaluation_shows_its_result(
    seeded: Seeded,
) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(app, pilot, SEGMENT_FAILED)
        await pilot.pause()
        assert "block fragments-synth0:7 failed 3 times" in _text(screen, "#summary")
        await pilot.press("f")
        await pilot.pause()
        assert BLOCK_ERROR.splitlines()[-1] in _text(screen, "#block-info")
        await pilot.press("escape")
        evaluation = await _open(app, pilot, EVALUATE_DONE)
        assert evaluation.has_class("-other")
        assert '"voi_split": 0.31' in _text(evaluation, "#result")
        await pilot.press("escape")
        missing = await _open(app, pilot, "train-20000101-000000-dead", loaded=False)
        await until(pilot, lambda: "no run" in _text(missing, "#summary"))
        assert app.daemon_error is None  # a missing run is not a missing daemon
