"""Bad requests get a 4xx with a one-line message; the CLI prints it on one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CliCaller
from tests.daemon.conftest import Daemon, submit


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"project": "/nowhere/p"}, 404, "project_not_found", "no project at /nowhere/p"),
        ({"project": "ghost"}, 404, "project_not_found", "lsdctl init ghost"),
        ({"overrides": {"train.iterations": 0}}, 422, "invalid", "train.iterations"),
        ({"overrides": {"train.nope": 1}}, 422, "invalid", "unknown config key 'train.nope'"),
        ({"overrides": {"model.input_shape": [45, 45, 45]}}, 422, "invalid", "input_shape"),
        ({"preset": "nosuch"}, 422, "invalid", "unknown preset 'nosuch'"),
        ({"kind": "dance"}, 422, "invalid", "kind"),
        ({"gpus": -1}, 422, "invalid", "gpus"),
        ({"after": ["train-00000000-000000-dead"]}, 404, "run_not_found", "in after"),
    ],
)
def test_bad_submits_get_4xx_with_one_line(
    module_daemon: Daemon, body: dict[str, object], status: int, code: str, message: str
) -> None:
    request = {"kind": "train", "project": str(module_daemon.projects / "p"), **body}
    with module_daemon.http() as http:
        before = len(http.get("/v1/runs", params={"limit": 0}).json())
        response = http.post("/v1/runs", json=request)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["code"] == code
    assert message in answer["detail"] and "\n" not in answer["detail"]
    with module_daemon.http() as http:
        assert len(http.get("/v1/runs", params={"limit": 0}).json()) == before  # none recorded


def test_unknown_runs_and_wrong_states(module_daemon: Daemon) -> None:
    daemon = module_daemon
    with daemon.http() as http:
        for method, path in [
            ("GET", "/v1/runs/nope"),
            ("GET", "/v1/runs/nope/metrics"),
            ("GET", "/v1/runs/nope/validation"),
            ("GET", "/v1/runs/nope/log"),
            ("POST", "/v1/runs/nope/cancel"),
            ("POST", "/v1/runs/nope/resume"),
        ]:
            response = http.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json() == {
                "detail": "no run 'nope': `lsdctl runs` lists the runs",
                "code": "run_not_found",
            }
        run_id = submit(daemon, hold=True)
        assert http.post(f"/v1/runs/{run_id}/resume").status_code == 409
        assert http.post(f"/v1/runs/{run_id}/cancel").json()["state"] == "cancelled"
        again = http.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 409 and "cancelled already" in again.json()["detail"]
        assert http.get("/v1/runs", params={"state": "bogus"}).status_code == 422


def test_cli_prints_the_daemons_refusal_in_one_line(
    module_daemon: Daemon, cli: CliCaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LSDCTL_HOME", str(module_daemon.home))
    monkeypatch.setenv("LSDCTL_PROJECTS", str(module_daemon.projects))
    cli.bad("run", "show", "train-nope", match="no run 'train-nope'")
    cli.bad("cancel", "train-nope", match="no run 'train-nope'")
    cli.bad("resume", "train-nope", match="no run 'train-nope'")
    cli.bad("logs", "train-nope", match="no run 'train-nope'")
    cli.bad("train", "--project", "ghost", "-d", match="no project 'ghost'")
    cli.bad("train", "--project", "p", "--model", "FOO", "-d", match="train.model_type")
    cli.bad("train", "--project", "p", "--dataset", "nosuch", "-d", match="unknown preset")
    cli.bad("train", "--project", "p", "--after", "train-nope", "-d", match="in after")
    held = submit(module_daemon, hold=True)
    cli.ok("cancel", held)
    cli.bad("cancel", held, match="cancelled already")
    cli.bad("runs", "--state", "bogus", match="unknown state")


def test_cli_says_when_the_daemon_cannot_start(
    cli: CliCaller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A home that is a file: no daemon can start there, and the CLI says where to look.
    home = tmp_path / "home"
    home.mkdir()
    (home / "daemon.lock").mkdir()  # flock cannot open a folder: the daemon exits at once
    monkeypatch.setenv("LSDCTL_HOME", str(home))
    result = cli("runs")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: the lsdctl daemon is not running and could not be started: see "
        f"{home / 'daemon.log'}"
    )
    assert "cannot start" in (home / "daemon.log").read_text()
