"""`lsdctl init`: layout, presets, names, and bad input that leaves nothing behind."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.conftest import CliCaller, tree


def test_init_creates_layout_and_says_what_next(cli: CliCaller, projects: Path) -> None:
    result = cli.ok("init", "brain1", "--preset", "cremi")
    root = projects / "brain1"
    assert {p.name for p in root.iterdir()} == {"project.toml", "train", "val", "test", "runs"}
    config = tomllib.loads((root / "project.toml").read_text())
    assert config["data"]["voxel_size"] == [40, 4, 4]
    assert config["model"]["input_shape"] == [132, 268, 268]
    assert "lsdctl data import" in result.stdout
    assert "[72, 144, 144]" in result.stdout


def test_dataset_is_an_alias_of_preset_and_default_is_tiny(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "a", "--dataset", "fib25")
    cli.ok("init", "b")
    assert tomllib.loads((projects / "a/project.toml").read_text())["preset"] == "fib25"
    assert tomllib.loads((projects / "b/project.toml").read_text())["preset"] == "tiny"


def test_preset_file_of_the_users(cli: CliCaller, projects: Path, tmp_path: Path) -> None:
    preset = tmp_path / "mylab.toml"
    preset.write_text("[data]\nvoxel_size = [30, 6, 6]\n[model]\ninput_shape = [148, 148, 148]\n")
    cli.ok("init", "lab", "--preset", str(preset))
    config = tomllib.loads((projects / "lab/project.toml").read_text())
    assert config["data"]["voxel_size"] == [30, 6, 6]
    assert config["model"]["input_shape"] == [148, 148, 148]


def test_force_rewrites_config_and_keeps_volumes(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    volume = projects / "p/train/v.zarr"
    volume.mkdir()
    cli.bad("init", "p", "--preset", "cremi", match="already exists")
    cli.ok("init", "p", "--preset", "cremi", "--force")
    assert tomllib.loads((projects / "p/project.toml").read_text())["preset"] == "cremi"
    assert volume.is_dir()


@pytest.mark.parametrize(
    "name", ["../x", "/abs", "", ".hidden", "a/b", "x" * 65, "name with space", "_under"]
)
def test_bad_names_are_refused_and_nothing_is_created(
    cli: CliCaller, projects: Path, tmp_path: Path, name: str
) -> None:
    before = tree(tmp_path)
    cli.bad("init", name, match="invalid project name")
    assert tree(tmp_path) == before


def test_unknown_preset(cli: CliCaller, projects: Path) -> None:
    cli.bad("init", "p", "--preset", "cremmi", match="unknown preset 'cremmi'")
    assert not (projects / "p").exists()


def test_invalid_preset_file_creates_nothing(
    cli: CliCaller, projects: Path, tmp_path: Path
) -> None:
    preset = tmp_path / "broken.toml"
    preset.write_text("[model]\ninput_shape = [100, 100, 100]\n")
    cli.bad("init", "p", "--preset", str(preset), match="model.input_shape")
    assert not (projects / "p").exists()


def test_usage_errors_are_one_line_too(cli: CliCaller, projects: Path) -> None:
    cli.bad("init", "-x", match="no such option: -x")
    cli.bad("init", match="missing argument")
