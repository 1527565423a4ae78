"""`lsdctl config`: show, get, set, validate, edit, presets, and refusals that change nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import CliCaller


@pytest.fixture
def project(cli: CliCaller, projects: Path) -> Path:
    cli.ok("init", "p", "--preset", "tiny")
    return projects / "p" / "project.toml"


def test_show_documents_every_section(cli: CliCaller, project: Path) -> None:
    out = cli.ok("config", "show", "-P", "p").stdout
    for section in (
        "[system]",
        "[data]",
        "[preprocess]",
        "[train]",
        "[train.augment]",
        "[model]",
        "[predict]",
        "[segment]",
    ):
        assert section in out
    assert "# Adam learning rate." in out
    as_json = json.loads(cli.ok("config", "show", "--json", "-P", "p").stdout)
    assert as_json["model"]["output_shape"] == [28, 28, 28]


def test_get_and_set_round_trip(cli: CliCaller, project: Path) -> None:
    assert json.loads(cli.ok("config", "get", "train.iterations", "-P", "p").stdout) == 1000
    cli.ok("config", "set", "TRAIN.iterations", "5000", "-P", "p")  # sections case-insensitive
    assert json.loads(cli.ok("config", "get", "train.iterations", "-P", "p").stdout) == 5000
    cli.ok("config", "set", "train.model_type", "LSD", "-P", "p")
    assert json.loads(cli.ok("config", "get", "train.model_type", "-P", "p").stdout) == "LSD"
    result = cli.ok("config", "set", "model.input_shape", "[52, 52, 52]", "-P", "p")
    assert "[36, 36, 36]" in result.stdout  # the new output shape is reported
    assert json.loads(cli.ok("config", "get", "model.output_shape", "-P", "p").stdout) == [
        36,
        36,
        36,
    ]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("train.iteratons", "5", "unknown config key 'train.iteratons'"),
        ("nosection.x", "5", "unknown config key"),
        ("train.iterations", "many", "train.iterations"),
        ("train.iterations", "0", "greater than 0"),
        ("train.model_type", "UNET", "train.model_type"),
        ("segment.thresholds", "[0.5, 1.0]", "less than 1"),
        ("data.voxel_size", "[8, 8]", "data.voxel_size needs 3 values"),
        ("data.voxel_size", "[0, 8, 8]", "positive"),
        ("model.input_shape", "[45, 45, 45]", "does not fit the unet"),
        ("train", "5", "is a section"),
    ],
)
def test_set_refuses_bad_values_and_leaves_the_file(
    cli: CliCaller, project: Path, key: str, value: str, match: str
) -> None:
    before = project.read_bytes()
    cli.bad("config", "set", key, value, "-P", "p", match=match)
    assert project.read_bytes() == before


def test_invalid_toml_is_one_line_for_every_command(cli: CliCaller, project: Path) -> None:
    project.write_text("[train\niterations = 3\n")
    for args in (
        ("config", "show", "-P", "p"),
        ("config", "validate", "-P", "p"),
        ("config", "set", "train.iterations", "5", "-P", "p"),
        ("data", "check", "-P", "p"),
    ):
        cli.bad(*args, match="is not valid toml")
    assert project.read_text() == "[train\niterations = 3\n"


def test_validate_reports_hand_edited_mistakes(cli: CliCaller, project: Path) -> None:
    cli.ok("config", "validate", "-P", "p")
    project.write_text(project.read_text().replace("iterations = 1000", "iterations = 0"))
    cli.bad("config", "validate", "-P", "p", match="train.iterations")
    project.write_text(project.read_text().replace("iterations = 0", "iterations = 10\nbogus = 1"))
    cli.bad("config", "validate", "-P", "p", match="train.bogus: unknown key")


def _editor(tmp_path: Path, old: str, new: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        f"p.write_text(p.read_text().replace({old!r}, {new!r}))\n"
    )
    return f"{sys.executable} {script}"


def test_edit_saves_a_valid_edit(
    cli: CliCaller, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "iterations = 1000", "iterations = 777"))
    monkeypatch.delenv("VISUAL", raising=False)
    cli.ok("config", "edit", "-P", "p")
    assert json.loads(cli.ok("config", "get", "train.iterations", "-P", "p").stdout) == 777


def test_edit_refuses_an_invalid_edit(
    cli: CliCaller, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "iterations = 1000", "iterations = -1"))
    monkeypatch.delenv("VISUAL", raising=False)
    before = project.read_bytes()
    result = cli.bad("config", "edit", "-P", "p", match="nothing saved")
    assert project.read_bytes() == before
    draft = Path(result.stderr.strip().rsplit(" ", 1)[-1])
    assert "iterations = -1" in draft.read_text()  # the user's work is not lost


def test_presets_lists_every_preset(cli: CliCaller) -> None:
    out = cli.ok("config", "presets").stdout
    for name in ("cremi", "snemi", "zebrafinch", "fib25", "tiny"):
        assert name in out
    assert "[84, 268, 268] -> output [48, 56, 56]" in out


def test_unknown_project(cli: CliCaller, projects: Path) -> None:
    cli.bad("config", "show", "ghost", match="no project 'ghost'")
