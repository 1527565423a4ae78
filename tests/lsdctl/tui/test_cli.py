"""`lsdctl tui`: registered, documented, and light (the TUI loads no torch, gunpowder
or daisy: it talks to the daemon only through the client)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import CliCaller

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
