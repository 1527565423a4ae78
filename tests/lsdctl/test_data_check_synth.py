"""`lsdctl data synth` and `lsdctl data check` on real zarr volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from engine.data.volume import open_array, write_volume
from tests.conftest import CliCaller, tree


def test_synth_is_deterministic_and_checks_clean(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    out = cli.ok("data", "synth", "--project", "p", "--shape", "24,48,48").stdout
    assert "train/synth0.zarr" in out
    cli.ok(
        "data", "synth", "--project", "p", "--shape", "24,48,48", "--name", "again", "--seed", "0"
    )
    cli.ok("data", "synth", "--project", "p", "--shape", "24,48,48", "--split", "test")
    a = zarr.open(str(projects / "p/train/synth0.zarr/raw"))[:]
    b = zarr.open(str(projects / "p/train/again.zarr/raw"))[:]
    c = zarr.open(str(projects / "p/test/synth1.zarr/raw"))[:]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert tuple(open_array(projects / "p/train/synth0.zarr", "labels").voxel_size) == (8, 8, 8)
    report = json.loads(cli.ok("data", "check", "--project", "p", "--json").stdout)
    assert report["ok"] is True
    volume = next(v for v in report["volumes"] if v["name"] == "synth0")
    assert volume["arrays"]["raw"]["shape"] == [24, 48, 48]
    assert volume["arrays"]["labels"]["dtype"] == "uint64"
    assert volume["label_count"] > 5
    assert volume["labelled_fraction"] == 1.0 and volume["mask_coverage"] == 1.0
    assert volume["usable"] is True


def test_synth_refuses_wrong_shape_arity(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    before = tree(projects)
    cli.bad("data", "synth", "--project", "p", "--shape", "48,48", match="needs 3 values")
    cli.bad("data", "synth", "--project", "p", "--shape", "4,48,48", match="")
    assert tree(projects) == before


def test_check_without_volumes_exits_1(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p")
    result = cli("data", "check", "--project", "p")
    assert result.exit_code == 1
    assert "no training volumes" in result.stdout


def test_check_finds_unusable_training_volumes(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (20, 40, 40), dtype=np.uint8)
    write_volume(projects / "p/train/nolabels.zarr", raw, None, [8, 8, 8])
    write_volume(projects / "p/train/empty.zarr", raw, np.zeros(raw.shape, np.uint64), [8, 8, 8])
    write_volume(
        projects / "p/train/wrongvoxel.zarr", raw, np.ones(raw.shape, np.uint64), [40, 4, 4]
    )
    write_volume(
        projects / "p/train/flat.zarr",
        np.full(raw.shape, 9, np.uint8),
        np.ones(raw.shape, np.uint64),
        [8, 8, 8],
    )
    write_volume(projects / "p/test/nogt.zarr", raw, None, [8, 8, 8])
    result = cli("data", "check", "--project", "p", "--json")
    assert result.exit_code == 1
    report = {v["name"]: v for v in json.loads(result.stdout)["volumes"]}
    problems = {name: " ".join(p["message"] for p in v["problems"]) for name, v in report.items()}
    assert not report["nolabels"]["usable"] and "no labels" in problems["nolabels"]
    assert not report["empty"]["usable"] and "all 0" in problems["empty"]
    assert (
        not report["wrongvoxel"]["usable"] and "differs from the project" in problems["wrongvoxel"]
    )
    assert not report["flat"]["usable"] and "constant" in problems["flat"]
    assert report["nogt"]["usable"] and "not evaluated" in problems["nogt"]
    table = cli("data", "check", "--project", "p")
    assert table.exit_code == 1 and "unusable" in table.stdout
