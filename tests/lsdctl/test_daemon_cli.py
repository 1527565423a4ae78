"""`lsdctl daemon start|stop|status|restart`, and commands starting the daemon themselves."""

from __future__ import annotations

import json
from pathlib import Path

from daemon.launcher import is_alive
from tests.conftest import CliCaller


def _pid_alive(pid: int) -> bool:
    # This test process started the daemons: a stopped one lingers as a zombie.
    return is_alive(pid, None)


def test_start_status_restart_stop(cli: CliCaller, home: Path) -> None:
    result = cli("daemon", "status")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: the lsdctl daemon is not running: `lsdctl daemon start` starts it "
        "(commands that need it start it too)"
    )
    off = cli("daemon", "status", "--json")
    assert off.exit_code == 1 and json.loads(off.stdout)["running"] is False

    assert cli.ok("daemon", "start").stdout.startswith("started the lsdctl daemon (pid ")
    status = json.loads(cli.ok("daemon", "status", "--json").stdout)
    pid = status["pid"]
    assert status["running"] is True and status["socket"] == str(home / "daemon.sock")
    assert status["uptime_s"] >= 0 and status["runs"]["queued"] == 0
    assert int((home / "daemon.pid").read_text()) == pid
    assert "running already" in cli.ok("daemon", "start").stdout
    assert f"pid {pid}" in cli.ok("daemon", "status").stdout

    cli.ok("daemon", "restart")
    new_pid = json.loads(cli.ok("daemon", "status", "--json").stdout)["pid"]
    assert new_pid != pid and not _pid_alive(pid)

    assert cli.ok("daemon", "stop").stdout.startswith("stopped the lsdctl daemon")
    assert not _pid_alive(new_pid)
    assert not (home / "daemon.sock").exists() and not (home / "daemon.pid").exists()
    assert cli.ok("daemon", "stop").stdout.strip() == "the lsdctl daemon is not running"


def test_commands_that_need_the_daemon_start_it(cli: CliCaller, home: Path) -> None:
    assert not (home / "daemon.sock").exists()
    assert json.loads(cli.ok("runs", "--json").stdout) == []
    status = json.loads(cli.ok("daemon", "status", "--json").stdout)
    assert status["running"] is True
    assert "serving" in (home / "daemon.log").read_text()
