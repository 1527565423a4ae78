"""Fixtures of the CLI tests that start a real daemon through the CLI."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliCaller
from tests.daemon.conftest import processes_of, short_home


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, projects: Path) -> Iterator[Path]:
    """A daemon home of its own (LSDCTL_HOME), fast polling; whatever daemon the CLI
    starts there is stopped at teardown, and killed if stopping fails."""
    path = short_home()
    monkeypatch.setenv("LSDCTL_HOME", str(path))
    monkeypatch.setenv("LSDCTL_POLL_S", "0.1")
    yield path
    CliCaller()("daemon", "stop")
    for pid in processes_of(path):  # only if stop failed: never leave a process behind
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)
