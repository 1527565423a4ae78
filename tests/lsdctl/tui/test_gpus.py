"""The GPU screen on two fake GPUs (tests/daemon/fake_nvml): utilisation and memory with
their history, temperature, power, processes, and the run holding each GPU."""

from __future__ import annotations

import pytest

from lsdctl.tui.screens import GpusScreen, RunDetailScreen
from lsdctl.tui.widgets import GpuPanel
from tests.lsdctl.tui.conftest import SIZE, app_for, screen_text, until
from tests.lsdctl.tui.seed import PREDICT_RUNNING, TRAIN_RUNNING, Seeded

pytestmark = pytest.mark.anyio


async def test_each_gpu_shows_its_load_history_sensors_and_holder(seeded: Seeded) -> None:
    app = app_for(seeded.daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, GpusScreen)
        await until(pilot, lambda: screen.loaded)
        await pilot.pause()
        assert not screen.has_class("-none")
        panels = list(screen.query(GpuPanel))
        assert [p.index for p in panels] == [0, 1]
        text = screen_text(app)
        assert f"GPU 0 · Fake GPU 80GB · {TRAIN_RUNNING}" in text
        assert f"GPU 1 · Fake GPU 80GB · {PREDICT_RUNNING}" in text
        assert "10 %" in text  # GPU 1's utilisation (the fake reports 10 × index)
        assert "1.0 GiB / 80.0 GiB" in text and "2.0 GiB / 80.0 GiB" in text
        assert "temperature 40 °C · power -" in text  # the fake has no power sensor
        assert "processes: none" in text
        # Every refresh adds a sample to the history behind the sparklines.
        assert [len(screen.utilization[i]) for i in (0, 1)] == [1, 1]
        for expected in (2, 3):
            await screen.refresh_data().wait()
            assert len(screen.utilization[1]) == expected
        assert list(screen.utilization[1]) == [10.0, 10.0, 10.0]
        assert list(screen.memory[0]) == [1024.0] * 3
        # down/j and up/k move between GPUs; enter opens the run that holds one.
        panels[0].focus()
        await pilot.press("j")
        assert screen.focused is panels[1]
        await pilot.press("k")
        assert screen.focused is panels[0]
        await pilot.press("down")
        assert screen.focused is panels[1]
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        assert detail.run_id == PREDICT_RUNNING
        await pilot.press("escape", "up", "enter")
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.run_id == TRAIN_RUNNING
