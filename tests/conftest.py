"""Shared fixtures: a temporary projects root and a CLI runner that checks error style."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from lsdctl.cli.main import app

# Every event written in any test, by any process the tests start, is read back by its
# model at once (engine.contract.events).
os.environ.setdefault("LSDCTL_CHECK_EVENTS", "1")

SHARED_DATA = Path(
    os.environ.get("LSDCTL_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data")
)


@pytest.fixture
def projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "projects"
    monkeypatch.setenv("LSDCTL_PROJECTS", str(root))
    # A project named by the user's shell would be implied where a test names none.
    monkeypatch.delenv("LSDCTL_PROJECT", raising=False)
    yield root


@pytest.fixture
def cli() -> CliCaller:
    return CliCaller()


class CliCaller:
    """Invoke `lsdctl ARGS…` in-process; stdout and stderr apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, f"lsdctl {' '.join(map(str, args))}: {result.output}"
        return result

    def bad(self, *args: str, match: str) -> Result:
        """Bad input: exit 2, exactly one line on stderr naming the problem, no traceback."""
        result = self(*args)
        assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one error line, got: {result.stderr!r}"
        assert lines[0].startswith("error: ")
        assert match.lower() in lines[0].lower(), lines[0]
        assert "Traceback" not in result.output
        return result


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file and folder below root with its content: to prove nothing changed."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }
