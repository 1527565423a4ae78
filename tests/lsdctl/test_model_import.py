"""`lsdctl model import`: a checkpoint of the older scripts (funlib.learn.torch UNet layer
names, `model_state_dict`) becomes an lsdctl checkpoint of the project, or is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from engine.models import build_model
from engine.project import config as cfg
from engine.runs.checkpoint_check import check_checkpoint
from engine.runs.checkpoints import load_checkpoint
from tests.conftest import CliCaller, tree

# How funlib.learn.torch's UNet and catena's heads name lsdctl's layers (written out from
# their sources: ConvPass keeps its layers in `conv_pass`, the up path is per head).
_FUNLIB_NAMES = (
    (r"unet\.down\.(\d+)\.(\d+)\.", r"unet.l_conv.\1.conv_pass.\2."),
    (r"unet\.upsample\.(\d+)\.(\d+)\.up\.", r"unet.r_up.\1.\2.up."),
    (r"unet\.up\.(\d+)\.(\d+)\.(\d+)\.", r"unet.r_conv.\1.\2.conv_pass.\3."),
    (r"(lsd_head|aff_head)\.0\.", r"\1.conv_pass.0."),
)


def _older_scripts_checkpoint(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for name, value in model.state_dict().items():
        for pattern, replacement in _FUNLIB_NAMES:
            name = re.sub(pattern, replacement, name)
        state[name] = value
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}, "epoch": 5}, path)
    return state


@pytest.fixture
def model(cli: CliCaller, projects: Path) -> torch.nn.Module:
    cli.ok("init", "p", "--preset", "tiny")
    config = cfg.load(projects / "p" / "project.toml")
    torch.manual_seed(0)
    return build_model("MTLSD", config.model, 3, 3)


@pytest.mark.slow
def test_older_checkpoint_becomes_a_project_model(
    cli: CliCaller, projects: Path, tmp_path: Path, model: torch.nn.Module
) -> None:
    source = tmp_path / "model_checkpoint_5"
    _older_scripts_checkpoint(source, model)
    result = cli.ok("model", "import", str(source), "--project", "p", "--name", "old")
    assert "imported models/old.pt" in result.stdout
    imported = load_checkpoint(projects / "p" / "models" / "old.pt")
    assert imported["model_type"] == "MTLSD" and imported["iteration"] == 5
    expected = model.state_dict()
    assert set(imported["model"]) == set(expected)
    for name, value in expected.items():
        assert torch.equal(imported["model"][name], value), name
    # What predict --checkpoint and train --init-from check before they start.
    check_checkpoint(projects / "p" / "models" / "old.pt", cfg.load(projects / "p/project.toml"))
    cli.bad("model", "import", str(source), "--project", "p", "--name", "old", match="--overwrite")


@pytest.mark.slow
def test_refusals_name_the_layer_and_write_nothing(
    cli: CliCaller, projects: Path, tmp_path: Path, model: torch.nn.Module
) -> None:
    state = _older_scripts_checkpoint(tmp_path / "plain.pt", model)
    with_norm = {**state, "unet.l_conv.0.conv_pass.1.running_mean": torch.zeros(6)}
    torch.save({"model_state_dict": with_norm}, tmp_path / "norm.pt")
    before = tree(projects)
    cli.bad("model", "import", str(tmp_path / "norm.pt"), "--project", "p", match="running_mean")
    cli.ok("config", "set", "p", "model.num_fmaps", "4")
    cli.bad("model", "import", str(tmp_path / "plain.pt"), "--project", "p", match="does not fit")
    cli.ok("config", "set", "p", "model.num_fmaps", "6")
    (tmp_path / "text.pt").write_text("hello\n")
    cli.bad("model", "import", str(tmp_path / "text.pt"), "--project", "p", match="not a torch")
    assert tree(projects)["p/project.toml"] == before["p/project.toml"]
    assert not (projects / "p" / "models").exists()
