"""The dependency rules of DESIGN.md: engine imports neither frontend; frontends stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_cli_runs_without_loading_heavy_modules() -> None:
    # The contract at run time too: importing and running the CLI's help loads no
    # torch, gunpowder or daisy (lazy imports inside commands included).
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lsdctl.cli.main import app\n"
        "r = CliRunner().invoke(app, ['config', 'presets'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'gunpowder', 'daisy'})\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
