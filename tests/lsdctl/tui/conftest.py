"""Real daemons for the TUI: a seeded one shared by the tests that only look (and the
snapshots), fresh ones for the tests that change things; pilot helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from lsdctl.client import AsyncDaemonClient
from lsdctl.tui import LsdctlApp, create_app
from tests.daemon.conftest import (  # noqa: F401  (fixtures)
    Daemon,
    DaemonMaker,
    make_daemon,
    template_project,
)
from tests.lsdctl.tui.seed import Seeded, seed_history

SIZE = (120, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen in UTC, whatever the machine's zone: snapshots stay the same."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="package")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
    template_project: Path,  # noqa: F811
) -> Iterator[Seeded]:
    """A daemon on two fake GPUs with six seeded runs; tests must not change it."""
    maker = DaemonMaker(tmp_path_factory.mktemp("seeded"), template_project)
    daemon = maker(fake_gpus=2, start=False, LSDCTL_POLL_S="0.5")
    seeded = seed_history(daemon, gpus=True)
    daemon.start()
    yield seeded
    seeded.stop()
    maker.reap()


def app_for(daemon: Daemon, interval: float = 3600.0, projects: Path | None = None) -> LsdctlApp:
    """The app on `daemon`; the long default interval means one refresh per screen shown."""
    return create_app(
        AsyncDaemonClient(daemon.home, timeout=10.0),
        projects_root=projects or daemon.projects,
        interval=interval,
    )


async def until(
    pilot: Pilot[None], condition: Callable[[], object], timeout: float = 15.0, what: str = ""
) -> None:
    """Let the app run until `condition()` holds (or fail after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.04)


def screen_text(app: LsdctlApp) -> str:
    """Everything the screen shows now, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")


async def showing(pilot: Pilot[None], app: LsdctlApp, *texts: str, timeout: float = 10.0) -> None:
    """Let the app run until the screen shows every one of `texts`."""
    await until(
        pilot,
        lambda: all(t in screen_text(app) for t in texts),
        timeout,
        what=f"the screen to show {texts}",
    )
