"""`lsdctl tui`: registered, documented, light (the TUI loads no torch, gunpowder or
daisy: it talks to the daemon only through the client), and started as typed inside a
project's folder, its runs list filtered to that project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.widgets import Input

from lsdctl.client import AsyncDaemonClient
from lsdctl.tui import LsdctlApp, create_app
from lsdctl.tui.screens import RunsScreen
from tests.conftest import CliCaller
from tests.lsdctl.tui.conftest import SIZE, showing, until
from tests.lsdctl.tui.seed import Seeded

ROOT = Path(__file__).parents[3]


def test_tui_is_a_command_with_help(cli: CliCaller) -> None:
    result = cli.ok("tui", "--help")
    assert "--interval" in result.stdout
    assert "Runs, a run's loss and blocks and log, GPUs" in result.stdout
    assert "tui" in cli.ok("--help").stdout


def test_the_tui_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import lsdctl.tui, lsdctl.tui.screens, lsdctl.tui.widgets\n"
        "from lsdctl.client import AsyncDaemonClient\n"
        "app = lsdctl.tui.create_app(AsyncDaemonClient())\n"
        "heavy = {'torch', 'gunpowder', 'daisy', 'waterz', 'fastapi', 'sqlmodel', 'zarr'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class _FakeDaemonClient:
    """What `lsdctl tui` needs of ensure_daemon(): a context manager with paths.home."""

    def __init__(self, home: Path) -> None:
        self.paths = SimpleNamespace(home=home)

    def __enter__(self) -> _FakeDaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.anyio
async def test_tui_starts_as_typed_inside_a_project_folder(
    cli: CliCaller, projects: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LSDCTL_PROJECTS")
    monkeypatch.delenv("LSDCTL_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    cli.ok("init", "brain1")
    cli.ok("init", "brain2")
    brain1 = tmp_path / "projects" / "brain1"
    made: list[LsdctlApp] = []

    def create(*args: Any, **kwargs: Any) -> LsdctlApp:
        app = create_app(*args, **kwargs)  # this module's: the real one
        app.run = lambda *a, **k: None  # type: ignore[method-assign]  # the test drives it
        made.append(app)
        return app

    monkeypatch.setattr("lsdctl.tui.create_app", create)
    monkeypatch.setattr(
        "lsdctl.cli.tui.ensure_daemon", lambda: _FakeDaemonClient(tmp_path / "nohome")
    )
    monkeypatch.chdir(brain1 / "train")
    cli.ok("tui")
    cli.ok("tui", "--project", "brain2")
    cli.bad("tui", "--project", "ghost", match="no project 'ghost'")
    monkeypatch.chdir(tmp_path)
    cli.ok("tui")  # two projects and none implied: every project's runs, no error
    inside, named, outside = made
    assert inside.run_filter == "project:brain1" and named.run_filter == "project:brain2"
    assert outside.run_filter == ""
    # The projects root is the one brain1 is in, not ./projects below the folder.
    assert inside.projects_root == brain1.parent.absolute()
    async with inside.run_test(size=SIZE) as pilot:
        screen = inside.screen
        assert isinstance(screen, RunsScreen)
        assert screen.terms == ["project:brain1"]
        box = screen.query_one("#filter", Input)
        assert box.value == "project:brain1" and box.has_class("-active")
        await pilot.press("escape")
        assert screen.terms == []


@pytest.mark.anyio
async def test_an_initial_filter_narrows_the_runs_list(seeded: Seeded) -> None:
    for run_filter, shown in (("project:p", "6 runs"), ("project:other", "0 of 6 runs")):
        app = create_app(
            AsyncDaemonClient(seeded.daemon.home, timeout=10.0),
            projects_root=seeded.daemon.projects,
            interval=3600.0,
            run_filter=run_filter,
        )
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            await until(pilot, lambda s=screen: s.loaded)
            await showing(pilot, app, shown, f"filter: {run_filter}")
