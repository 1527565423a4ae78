"""The dependency rules of DESIGN.md: engine imports neither frontend; frontends stay light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 kept, 0 broken" in result.stdout


def _lint_daemon_no_engine(tmp_path: Path, daemon_imports: list[str]) -> str:
    """Run the daemon-no-engine contract of .importlinter over a stub tree whose daemon
    imports `daemon_imports`; returns lint-imports' output, "" when the contract holds."""
    tmp_path.mkdir(parents=True)
    for module in ("engine.contract", "engine.rundir", "engine.data.volume", "lsdctl.cli"):
        path = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in (path.parent, *path.parent.parents):
            if folder == tmp_path:
                break
            (folder / "__init__.py").touch()
        path.touch()
    (tmp_path / "daemon").mkdir()
    (tmp_path / "daemon" / "__init__.py").touch()
    for i, module in enumerate(daemon_imports):
        (tmp_path / "daemon" / f"m{i}.py").write_text(f"import {module}\n")
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / ".importlinter"), "--contract", "daemon-no-engine"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_the_daemon_may_import_engine_contract_and_no_other_engine_module(tmp_path: Path) -> None:
    assert _lint_daemon_no_engine(tmp_path / "ok", ["engine.contract"]) == ""
    for other in ("engine.rundir", "engine.data.volume"):
        output = _lint_daemon_no_engine(tmp_path / other, ["engine.contract", other])
        assert f"-> {other}" in output, output


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
