"""`lsdctl config import`: older yacs config_*.py files mapped, never executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliCaller

LEGACY = Path(__file__).parents[1] / "data" / "config_legacy_aniso.py"


@pytest.fixture
def project(cli: CliCaller, projects: Path) -> Path:
    cli.ok("init", "p", "--preset", "tiny")
    return projects / "p" / "project.toml"


def _get(cli: CliCaller, key: str) -> object:
    return json.loads(cli.ok("config", "get", "p", key).stdout)


def test_maps_what_it_can_and_lists_the_rest(cli: CliCaller, project: Path) -> None:
    out = cli.ok("config", "import", LEGACY, "--project", "p").stdout
    assert _get(cli, "train.batch_size") == 2
    assert _get(cli, "train.iterations") == 200000
    assert _get(cli, "train.checkpoint_every") == 2000
    assert _get(cli, "train.model_type") == "MTLSD"
    assert _get(cli, "system.num_workers") == 6
    assert _get(cli, "data.voxel_size") == [40, 4, 4]
    assert _get(cli, "model.num_fmaps") == 12  # MODEL_ANISO, since DATA.FIB = 0
    assert _get(cli, "model.kernel_size_down")[0] == [[1, 3, 3], [1, 3, 3]]
    assert _get(cli, "model.output_shape") == [72, 144, 144]
    assert _get(cli, "train.augment.prob_slip") == 0.5
    assert "TRAIN.DEVICE: lsdctl picks CUDA" in out
    assert "SYSTEM.CACHE_SIZE: computed at run time" in out
    assert _get(cli, "system.cache_size") == 4  # kept from the preset
    assert "DATA.HOME" in out
    assert "MODEL_ISO.NUM_FMAPS" in out  # the other model section is listed, not applied
    assert "MODEL_ANISO.JITTER_SIGMA" in out and "rejected" in out  # two values per axis: no fit
    assert "MODEL_ANISO.ROTATION_INTERVAL: no lsdctl equivalent" in out


def test_dry_run_writes_nothing(cli: CliCaller, project: Path) -> None:
    before = project.read_bytes()
    out = cli.ok("config", "import", LEGACY, "--project", "p", "--dry-run").stdout
    assert "TRAIN.BATCH_SIZE -> train.batch_size = 2" in out
    assert project.read_bytes() == before


def test_not_python_or_not_a_config(cli: CliCaller, project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "config_bad.py"
    bad.write_text("_C.TRAIN.BATCH_SIZE = (\n")
    before = project.read_bytes()
    cli.bad("config", "import", bad, "--project", "p", match="not valid python")
    other = tmp_path / "config_other.py"
    other.write_text("x = 1\n")
    cli.bad("config", "import", other, "--project", "p", match="sets no")
    cli.bad("config", "import", tmp_path / "missing.py", "--project", "p", match="cannot read")
    assert project.read_bytes() == before
