"""A project.toml that is not UTF-8 or not TOML: one line naming the file and what to do,
exit 2, from every command that reads it (in the CLI, in the daemon's resolver)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InputError
from engine.project import config as cfg
from tests.conftest import CliCaller

BROKEN = {
    "latin-1": ("iterations = 3 # r\xe9glage\n".encode("latin-1"), "is not UTF-8 text"),
    "utf-16": ("[train]\n".encode("utf-16"), "is not UTF-8 text"),
    "not toml": (b"[train\n", "is not valid TOML"),
}


@pytest.fixture
def project(cli: CliCaller, projects: Path) -> Path:
    cli.ok("init", "p", "--preset", "tiny")
    return projects / "p" / "project.toml"


def _refused(cli: CliCaller, path: Path, what: str, *args: str) -> None:
    """Exit 2; the last stderr line is the error (a deprecation note may come before)."""
    result = cli(*args)
    assert result.exit_code == 2, f"lsdctl {' '.join(args)}: exit {result.exit_code}"
    assert "Traceback" not in result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {path} {what}"), error
    assert "`lsdctl init p --force`" in error, error


@pytest.mark.parametrize("kind", list(BROKEN))
def test_config_commands(cli: CliCaller, project: Path, kind: str) -> None:
    content, what = BROKEN[kind]
    project.write_bytes(content)
    _refused(cli, project, what, "config", "show", "p")
    _refused(cli, project, what, "config", "set", "p", "train.iterations", "5")
    _refused(cli, project, what, "train", "--project", "p", "--local", "--iterations", "1")
    assert project.read_bytes() == content  # nothing rewritten


def test_train_through_the_daemon(cli: CliCaller, project: Path, home: Path) -> None:
    """The daemon's resolver reads project.toml: its answer is the same one line."""
    project.write_bytes(BROKEN["latin-1"][0])
    _refused(cli, project, "is not UTF-8 text", "train", "--project", "p", "--detach")
    assert (home / "daemon.sock").exists()  # the answer came through the daemon


def test_load_names_byte_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "q" / "project.toml"
    path.parent.mkdir()
    path.write_bytes(b"a = 1\nb = '\xff'\n")
    with pytest.raises(
        InputError, match=r"project\.toml is not UTF-8 text \(byte 0xff at offset 11\)"
    ):
        cfg.load(path)
