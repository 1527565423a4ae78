"""The project is implied, as git implies the repository (issue 12): inside its folder or
any folder below it, else $LSDCTL_PROJECT, else the only project; `--project` wins;
otherwise one line, exit 2, listing the projects. And `config`'s new form beside the
deprecated one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliCaller

OLD_SET_WARNING = (
    "warning: `lsdctl config set PROJECT KEY VALUE` is deprecated: use "
    "`lsdctl config set KEY VALUE --project PROJECT`"
)


@pytest.fixture
def brain1(cli: CliCaller, projects: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`lsdctl init brain1` typed in tmp_path, with the default projects root ./projects."""
    monkeypatch.delenv("LSDCTL_PROJECTS")
    monkeypatch.delenv("LSDCTL_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    cli.ok("init", "brain1")
    path = tmp_path / "projects" / "brain1"
    assert (path / "project.toml").is_file()
    return path


def _get(cli: CliCaller, key: str, *args: str) -> object:
    return json.loads(cli.ok("config", "get", key, *args).stdout)


@pytest.mark.parametrize("below", ["", "train", "test/deeper/still"])
def test_predict_segment_evaluate_act_on_the_enclosing_project(
    cli: CliCaller, brain1: Path, home: Path, monkeypatch: pytest.MonkeyPatch, below: str
) -> None:
    # Each step's "do the step before first" error names the project: it was implied.
    here = brain1 / below
    here.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(here)
    cli.bad("predict", "--workers", "8", match="no checkpoint in project brain1: train first")
    cli.bad("segment", match="no succeeded predict run in project brain1")
    cli.bad("evaluate", match="no succeeded segment run in project brain1")
    checked = cli("data", "check", "--json")  # exit 1: no training volume yet
    assert checked.exit_code == 1 and json.loads(checked.stdout)["project"] == "brain1"
    # Nothing was written below the project: no stray projects/ folder either.
    assert not (here / "projects").exists()


def test_train_is_submitted_for_the_enclosing_project(
    cli: CliCaller, brain1: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(brain1)
    # cremi validates during training: it needs a val volume as well as a train one,
    # both at cremi's resolution.
    cli.ok("config", "set", "data.voxel_size", "[40, 4, 4]")
    cli.ok("data", "synth", "--shape", "8,40,40")
    cli.ok("data", "synth", "--split", "val", "--shape", "8,40,40")
    for here in (brain1, brain1 / "train"):
        monkeypatch.chdir(here)
        # --require-gpu: on a machine without one the run waits, so nothing trains here.
        out = cli.ok("train", "--dataset", "cremi", "-d", "--json", "--require-gpu").stdout
        run = json.loads(out)
        assert set(run) == {"run", "kind", "state"}
        assert run["kind"] == "train" and run["run"].startswith("train-")
        detail = json.loads(cli.ok("run", "show", run["run"], "--json").stdout)
        assert detail["project"] == "brain1"
        assert Path(detail["project_path"]).resolve() == brain1.resolve()
        cancelled = json.loads(cli.ok("cancel", run["run"], "--json").stdout)
        assert cancelled["run"] == run["run"]
    # `runs` inside the folder lists this project's runs (and says so on stderr).
    listed = cli.ok("runs", "--json")
    assert {r["project"] for r in json.loads(listed.stdout)} == {"brain1"}
    assert len(json.loads(listed.stdout)) == 2


def test_only_project_then_several_then_lsdctl_project(
    cli: CliCaller, projects: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LSDCTL_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    result = cli.bad("predict", match="no project here and none in")
    assert "`lsdctl init NAME` creates one" in result.stderr
    cli.ok("init", "alpha")
    cli.bad("predict", match="no checkpoint in project alpha")  # the only one
    cli.ok("init", "beta")
    result = cli.bad("predict", "--workers", "8", match="which project?")
    assert "alpha, beta" in result.stderr and "--project" in result.stderr
    assert "LSDCTL_PROJECT" in result.stderr
    cli.bad("config", "show", match="which project?")
    monkeypatch.setenv("LSDCTL_PROJECT", "beta")
    cli.bad("predict", match="no checkpoint in project beta")
    cli.bad("predict", "-P", "alpha", match="no checkpoint in project alpha")  # the option wins
    monkeypatch.setenv("LSDCTL_PROJECT", "ghost")
    cli.bad("predict", match="$LSDCTL_PROJECT: no project 'ghost'")


def test_the_option_wins_over_the_folder_and_the_folder_over_the_environment(
    cli: CliCaller, brain1: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(brain1 / "train")
    # A new project goes beside brain1, not into it.
    cli.ok("init", "brain2")
    assert (brain1.parent / "brain2" / "project.toml").is_file()
    assert not (brain1 / "train" / "projects").exists()
    cli.bad("predict", "--project", "brain2", match="no checkpoint in project brain2")
    monkeypatch.setenv("LSDCTL_PROJECT", "brain2")
    cli.bad("predict", match="no checkpoint in project brain1")
    cli.bad("predict", "-P", "nope", match="no project 'nope'")


def test_config_new_form_and_the_deprecated_old_form(
    cli: CliCaller, brain1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(brain1)
    result = cli.ok("config", "set", "train.iterations", "100000")
    assert result.stderr == ""
    assert _get(cli, "train.iterations") == 100000
    cli.ok("init", "brain2")
    # The old form: project first. It works, and says it is deprecated.
    result = cli.ok("config", "set", "brain2", "train.iterations", "7")
    assert result.stderr.strip() == OLD_SET_WARNING
    assert result.stdout.strip() == "train.iterations = 7"
    assert _get(cli, "train.iterations", "--project", "brain2") == 7
    assert _get(cli, "train.iterations") == 100000  # brain1 untouched
    old_get = cli.ok("config", "get", "brain2", "train.iterations")
    assert json.loads(old_get.stdout) == 7
    assert "`lsdctl config get PROJECT KEY` is deprecated" in old_get.stderr
    for command in ("show", "validate"):
        old = cli.ok("config", command, "brain2")
        assert f"use `lsdctl config {command} --project PROJECT`" in old.stderr
    # The new form's --json; the project given twice; a mistyped old-form project.
    as_json = json.loads(cli.ok("config", "set", "train.iterations", "9", "--json").stdout)
    assert as_json == {
        "project": "brain1",
        "key": "train.iterations",
        "value": 9,
        "output_shape": as_json["output_shape"],
    }
    before = (brain1 / "project.toml").read_bytes()
    cli.bad(
        "config", "set", "brain2", "train.iterations", "5", "-P", "brain1", match="project twice"
    )
    cli.bad("config", "set", "ghost", "train.iterations", "5", match="no project 'ghost'")
    assert (brain1 / "project.toml").read_bytes() == before


def test_dataset_and_preset_are_one_option(cli: CliCaller, brain1: Path) -> None:
    cli.ok("init", "c1", "--dataset", "cremi")
    cli.ok("init", "c2", "--preset", "cremi")
    for name in ("c1", "c2"):
        assert _get(cli, "data.voxel_size", "-P", name) == [40, 4, 4]
    cli.bad("init", "c3", "-p", "cremi", match="no such option: -p")
