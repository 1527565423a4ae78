"""Real daemons on temporary homes: `python -m daemon` processes, stopped at teardown.

Every process a test daemon starts (its runs included) carries the daemon's
LSDCTL_HOME in its environment; teardown ends those by pid, so no test leaves a
process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from daemon.schemas import RunDetail, RunState
from lsdctl.cli.main import app
from lsdctl.client import DaemonClient

ROOT = Path(__file__).parents[2]
FAKE_NVML = Path(__file__).parent / "fake_nvml"


def short_home() -> Path:
    # Unix socket paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="l", dir="/tmp"))


def processes_of(home: Path) -> list[int]:
    """Pids of processes whose environment names `home` as LSDCTL_HOME."""
    marker = f"LSDCTL_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


class Daemon:
    """One `python -m daemon` on its own home, driven like a user would."""

    def __init__(self, home: Path, projects: Path, env: dict[str, str]) -> None:
        self.home = home
        self.projects = projects
        self.env = {
            **os.environ,
            "LSDCTL_HOME": str(home),
            "LSDCTL_PROJECTS": str(projects),
            "LSDCTL_CANCEL_GRACE_S": "5",
            "LSDCTL_POLL_S": "0.1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.home / "daemon.sock"

    def start(self, timeout: float = 20.0) -> None:
        with (self.home / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                if client.is_running():
                    return
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError(f"daemon did not start:\n{self.log()}")

    def client(self) -> DaemonClient:
        return DaemonClient(self.home)

    def http(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://lsdctl"
        )

    def log(self) -> str:
        path = self.home / "daemon.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            with self.http() as http:
                http.post("/v1/shutdown", timeout=5)
            self.process.wait(10)
        except (httpx.HTTPError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def wait(
        self, run_id: str, until: Callable[[RunDetail], bool], timeout: float = 60.0
    ) -> RunDetail:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                run = client.run(run_id)
                if until(run):
                    return run
                if time.monotonic() > deadline:
                    log = Path(run.run_dir) / "log.txt"
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                    raise AssertionError(
                        f"run {run_id} still {run.state.value} ({run.reason}) after "
                        f"{timeout} s\nrun log:\n{tail}\ndaemon log:\n{self.log()}"
                    )
                time.sleep(0.1)

    def wait_state(self, run_id: str, *states: RunState, timeout: float = 60.0) -> RunDetail:
        return self.wait(run_id, lambda r: r.state in states, timeout)

    def reap(self) -> None:
        """Stop the daemon and end every process it started (by pid)."""
        self.stop()
        for _ in range(50):
            pids = processes_of(self.home)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)


@pytest.fixture(scope="session")
def template_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with one synthetic 48³ volume, made once through the CLI."""
    root = tmp_path_factory.mktemp("template")
    runner = CliRunner()
    env = {"LSDCTL_PROJECTS": str(root)}
    for args in (
        ["init", "p", "--preset", "tiny"],
        ["data", "synth", "--project", "p", "--shape", "48,48,48"],
        ["config", "set", "p", "system.num_workers", "1"],
        ["config", "set", "p", "system.cache_size", "2"],
        ["config", "set", "p", "train.iterations", "6"],
        ["config", "set", "p", "train.checkpoint_every", "2"],
        ["config", "set", "p", "train.snapshot_every", "0"],
        # No val/ volume: these tests are about the daemon, not validation (the demo test
        # validates through a daemon).
        ["config", "set", "p", "train.validate_every", "0"],
        # The smallest input the tiny net takes: several iterations a second on a CPU.
        ["config", "set", "p", "model.input_shape", "[20, 20, 20]"],
    ):
        result = runner.invoke(app, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root / "p"


class DaemonMaker:
    """Starts daemons on fresh homes, each with its own copy of the tiny project."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        self.template = template
        self.made: list[Daemon] = []

    def __call__(self, fake_gpus: int | None = None, start: bool = True, **env: str) -> Daemon:
        home = short_home()
        projects = self.root / f"projects{len(self.made)}"
        shutil.copytree(self.template, projects / "p")
        if fake_gpus is not None:
            path = os.pathsep.join(p for p in (str(FAKE_NVML), os.environ.get("PYTHONPATH")) if p)
            env = {**env, "PYTHONPATH": path, "FAKE_NVML_GPUS": str(fake_gpus)}
        daemon = Daemon(home, projects, env)
        self.made.append(daemon)
        if start:
            daemon.start()
        return daemon

    def reap(self) -> None:
        for daemon in self.made:
            daemon.reap()
            shutil.rmtree(daemon.home, ignore_errors=True)


@pytest.fixture
def make_daemon(tmp_path: Path, template_project: Path) -> Iterator[DaemonMaker]:
    """Start daemons (`make_daemon(fake_gpus=2, start=True, **env)`); all reaped after."""
    maker = DaemonMaker(tmp_path, template_project)
    yield maker
    maker.reap()


@pytest.fixture(scope="module")
def module_daemon(
    tmp_path_factory: pytest.TempPathFactory, template_project: Path
) -> Iterator[Daemon]:
    """One daemon for a whole test module (tests that do not disturb each other)."""
    maker = DaemonMaker(tmp_path_factory.mktemp("module"), template_project)
    yield maker()
    maker.reap()


@pytest.fixture
def daemon(make_daemon: DaemonMaker) -> Daemon:
    return make_daemon()


@pytest.fixture
def use_daemon(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """`daemon`, with the environment of this process pointing the CLI at it."""
    monkeypatch.setenv("LSDCTL_HOME", str(daemon.home))
    monkeypatch.setenv("LSDCTL_PROJECTS", str(daemon.projects))
    return daemon


def submit(daemon: Daemon, **fields: Any) -> str:
    body = {"kind": "train", "project": str(daemon.projects / "p"), **fields}
    with daemon.http() as http:
        response = http.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id
