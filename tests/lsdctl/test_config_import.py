"""`lsdctl config import`: older yacs config_*.py files mapped, never executed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.project.legacy_config import read_assignments
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


HOSTILE = """
_C.TRAIN.BATCH_SIZE = 2
_C.TRAIN.EPOCHS = 2**10**10
_C.TRAIN.SAVE_EVERY = 99999999999 * 99999999999 * 99999999999
_C.SYSTEM.NUM_WORKERS = len([0] * 100000000)
_C.MODEL_ANISO.INPUT_SHAPE = [(0,) * 100000] * 100000
_C.DATA.RAW = "%0999999999d" % 1
_C.TRAIN.INITIAL_LR = 1e308 * 10
_C.TRAIN.LR_BETAS = (1 / 0, 0.999)
_C.SYSTEM.CACHE_SIZE = __import__("os").cpu_count()
_C.DATA.NEURON_LABELS = "ok" if _C.TRAIN.EPOCHS > 1 else "also ok"
if 10 ** 10 ** 10 > 0:
    _C.TRAIN.MODEL_TYPE = "lsd"
"""


def test_refuses_exponentiation_and_anything_large(projects: Path, tmp_path: Path) -> None:
    """`2**10**10` and its like are refused, not computed: the import ends at once (in a
    process of its own, so that a regression hangs only it), mapping what it can."""
    hostile = tmp_path / "config_hostile.py"
    hostile.write_text(HOSTILE)
    env = {**os.environ, "LSDCTL_PROJECTS": str(projects)}
    lsdctl = [sys.executable, "-c", "from lsdctl.cli.main import main; main()"]
    subprocess.run([*lsdctl, "init", "p", "--preset", "tiny"], env=env, check=True)
    start = time.monotonic()
    result = subprocess.run(
        [*lsdctl, "config", "import", str(hostile), "--project", "p"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - start < 30
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "TRAIN.BATCH_SIZE -> train.batch_size = 2" in out
    assert "TRAIN.EPOCHS: not evaluated: ** (exponentiation) is refused (2 ** 10 ** 10)" in out
    assert "TRAIN.SAVE_EVERY: not evaluated: a number beyond 64 bits" in out
    assert "SYSTEM.NUM_WORKERS: computed at run time" in out  # a call: never made
    assert "MODEL_ANISO.INPUT_SHAPE: not evaluated: more than 10000 items" in out
    assert "DATA.RAW: not evaluated: %-formatting" in out
    assert "TRAIN.INITIAL_LR: not evaluated: not a finite number" in out
    assert "TRAIN.LR_BETAS: not evaluated: fails to evaluate" in out
    assert "SYSTEM.CACHE_SIZE: computed at run time" in out
    # what depends on a refused value is not evaluated either; an `if` takes neither branch
    assert "DATA.NEURON_LABELS: computed at run time (_C.TRAIN.EPOCHS)" in out
    assert "MODEL_TYPE" not in out


def test_bounds_of_the_interpreter(tmp_path: Path) -> None:
    path = tmp_path / "config_bounds.py"
    path.write_text(
        "_C.A = (3,) * 3\n_C.B = [[1, 2]] * 3 + [[0]]\n_C.C = -(2 * 4) // 3 % 5\n"
        "_C.D = math.pi / 2\n_C.E = [0] * 9999\n_C.F = _C.E * 2\n_C.G = 2 ** 2\n"
        "_C.H = 9223372036854775807 + 1\n_C.I = 9223372036854775807 + 2\n_C.J = math.inf\n"
        "_C.K = os.sep\n_C.L = ((((((((((1))))))))))\n"
    )
    values = read_assignments(path)
    assert values["A"] == (3, 3, 3)
    assert values["B"] == [[1, 2], [1, 2], [1, 2], [0]]
    assert values["C"] == -(2 * 4) // 3 % 5
    assert values["D"] == math.pi / 2
    assert values["E"] == [0] * 9999
    assert values["H"] == 2**63
    assert values["L"] == 1
    for refused in "FGIJK":
        assert isinstance(values[refused], Exception), refused
    big = tmp_path / "config_big.py"
    big.write_bytes(b"_C.A = 1\n" + b"#" * 1_000_000)
    with pytest.raises(InputError, match="is 1000009 bytes"):
        read_assignments(big)
    deep = tmp_path / "config_deep.py"
    deep.write_text("_C.A = " + "+".join(["1"] * 100_000) + "\n_C.B = 1\n")
    with pytest.raises(InputError, match="nests expressions too deeply"):
        read_assignments(deep)
