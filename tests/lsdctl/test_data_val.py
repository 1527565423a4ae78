"""The val/ split on the data side: `data import|synth --split val`, the provenance each
volume records, and `data check` listing val volumes and warning when a val or test
volume shares voxels with a training (or val) one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import zarr

from engine.data import provenance
from engine.data.volume import write_volume
from engine.project.layout import Project
from tests.conftest import CliCaller, tree

RNG = np.random.default_rng(11)
RAW = RNG.integers(0, 255, (40, 24, 24), dtype=np.uint8)
LABELS = RNG.integers(1, 9, (40, 24, 24)).astype(np.uint32)


@pytest.fixture
def project(cli: CliCaller, projects: Path) -> Path:
    cli.ok("init", "p", "--preset", "tiny")  # 3D, voxel 8,8,8
    return projects / "p"


def _stack(path: Path, labels: bool = True) -> Path:
    with h5py.File(path, "w") as f:
        f["raw"] = RAW
        if labels:
            f["labels"] = LABELS
    return path


def _attrs(volume: Path) -> dict[str, Any]:
    attrs: dict[str, Any] = zarr.open_group(str(volume), mode="r").attrs.asdict()
    return attrs


def _check(cli: CliCaller) -> tuple[int, dict[str, dict[str, Any]]]:
    result = cli("data", "check", "--project", "p", "--json")
    report = json.loads(result.stdout)
    return result.exit_code, {f"{v['split']}/{v['name']}": v for v in report["volumes"]}


def _overlaps(volume: dict[str, Any]) -> list[str]:
    return [p["message"] for p in volume["problems"] if "overlaps" in p["message"]]


def test_import_val_records_where_the_volume_came_from(
    cli: CliCaller, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stack(tmp_path / "stack.h5")
    monkeypatch.chdir(tmp_path)  # a relative source path is recorded absolute
    out = cli.ok(
        "data", "import", "stack.h5", "--project", "p", "--split", "val", "--crop", "30:35,:,4:"
    ).stdout
    assert "imported val/stack.zarr" in out
    volume = project / "val/stack.zarr"
    np.testing.assert_array_equal(zarr.open(str(volume / "raw"))[:], RAW[30:35, :, 4:])
    np.testing.assert_array_equal(zarr.open(str(volume / "labels"))[:], LABELS[30:35, :, 4:])
    origin = _attrs(volume)["provenance"]
    assert origin == {
        "kind": "import",
        "raw": {"path": str((tmp_path / "stack.h5").resolve()), "key": "raw"},
        "labels": {"path": str((tmp_path / "stack.h5").resolve()), "key": "labels"},
        "mask": None,
        "source_start": [30, 0, 4],
        "source_stop": [35, 24, 24],
        # No voxel size in the file: the project's 8 nm; the crop keeps world coordinates.
        "roi": {"offset": [240, 0, 32], "shape": [40, 192, 160]},
        "voxel_size": [8, 8, 8],
    }
    assert Project(project).volumes("val") == [volume]


def test_import_val_without_labels_is_refused_and_writes_nothing(
    cli: CliCaller, project: Path, projects: Path, tmp_path: Path
) -> None:
    src = _stack(tmp_path / "rawonly.h5", labels=False)
    before = tree(projects)
    cli.bad(
        "data",
        "import",
        src,
        "--project",
        "p",
        "--split",
        "val",
        match="no labels found for validation volume rawonly",
    )
    assert tree(projects) == before
    cli.ok("data", "import", src, "--project", "p", "--split", "test")  # test needs none


def test_synth_val_records_its_arguments_and_check_lists_it(cli: CliCaller, project: Path) -> None:
    cli.ok("data", "synth", "--project", "p", "--shape", "24,32,32")
    out = cli.ok("data", "synth", "--project", "p", "--shape", "24,32,32", "--split", "val")
    assert "val/synth2.zarr" in out.stdout  # its own default seed: not the training volume
    origin = _attrs(project / "val/synth2.zarr")["provenance"]
    assert origin == {
        "kind": "synth",
        "seed": 2,
        "shape": [24, 32, 32],
        "voxel_size": [8, 8, 8],
        "cell_size_nm": None,
        "roi": {"offset": [0, 0, 0], "shape": [192, 256, 256]},
    }
    code, volumes = _check(cli)
    assert code == 0
    assert list(volumes) == ["train/synth0", "val/synth2"]
    assert volumes["val/synth2"]["usable"] and volumes["val/synth2"]["label_count"] > 1
    assert volumes["val/synth2"]["provenance"]["seed"] == 2
    assert not _overlaps(volumes["val/synth2"])
    table = cli("data", "check", "--project", "p").stdout
    assert "val/synth2" in table

    # The same seed and shape is the same volume: warned about; another shape is not.
    cli.ok(
        "data", "synth", "--project", "p", "--shape", "24,32,32", "--split", "val", "--seed", "0"
    )
    cli.ok(
        "data", "synth", "--project", "p", "--shape", "24,32,40", "--split", "val", "--seed", "0",
        "--name", "wider",
    )  # fmt: skip
    _, volumes = _check(cli)
    assert _overlaps(volumes["val/synth0"]) == [
        "val/synth0 overlaps train/synth0 (the same synthetic volume: seed 0, shape [24, 32, 32]): "
        "validation scores would be optimistic; make it again with another --seed"
    ]
    assert not _overlaps(volumes["val/wider"]) and not _overlaps(volumes["val/synth2"])


def test_check_requires_labels_of_val_volumes(cli: CliCaller, project: Path) -> None:
    cli.ok("data", "synth", "--project", "p", "--shape", "24,32,32")
    raw = RNG.integers(0, 255, (20, 24, 24), dtype=np.uint8)
    write_volume(project / "val/nolabels.zarr", raw, None, [8, 8, 8])
    write_volume(project / "val/empty.zarr", raw, np.zeros(raw.shape, np.uint64), [8, 8, 8])
    code, volumes = _check(cli)
    assert code == 1  # training reads val volumes: an unusable one fails the check
    assert not volumes["val/nolabels"]["usable"]
    assert "validation volumes need neuron ids" in volumes["val/nolabels"]["problems"][0]["message"]
    assert not volumes["val/empty"]["usable"]
    table = cli("data", "check", "--project", "p")
    assert table.exit_code == 1
    assert "val/nolabels: error: no labels" in table.stdout


def test_overlapping_crops_of_one_file_are_warned_about_and_disjoint_ones_not(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    src = _stack(tmp_path / "stack.h5")
    other = _stack(tmp_path / "copy.h5")

    def imp(name: str, split: str, crop: str, *extra: str, source: Path = src) -> None:
        cli.ok(
            "data", "import", source, "--project", "p", "--name", name, "--split", split,
            "--crop", crop, *extra,
        )  # fmt: skip

    imp("tr", "train", "0:30,:,:")
    imp("overlap", "val", "25:35,:,:")
    # Another --offset moves it in the world, but they still share source voxels.
    imp("moved", "val", "28:32,:,:", "--offset", "8000,0,0")
    imp("apart", "val", "30:35,:,:")
    imp("elsewhere", "val", "0:30,:,:", source=other)  # another file: not compared
    imp("leak", "test", "5:10,4:8,:")
    imp("vs_val", "test", "33:40,:,:")
    imp("clean", "test", "36:40,:,:")
    code, volumes = _check(cli)
    assert code == 0  # a warning, not an error
    (message,) = _overlaps(volumes["val/overlap"])
    assert message == (
        f"val/overlap overlaps train/tr (same file {src.resolve()}:raw, source voxels "
        "z 25:30, y 0:24, x 0:24): validation scores would be optimistic; "
        "re-import with disjoint --crop"
    )
    assert volumes["val/overlap"]["usable"]
    (moved,) = _overlaps(volumes["val/moved"])
    assert "z 28:30" in moved
    assert not _overlaps(volumes["val/apart"])
    assert not _overlaps(volumes["val/elsewhere"])
    (leak,) = _overlaps(volumes["test/leak"])
    assert leak.startswith("test/leak overlaps train/tr (same file")
    assert "z 5:10, y 4:8, x 0:24): test scores would be optimistic" in leak
    assert sorted(m.split(" (")[0] for m in _overlaps(volumes["test/vs_val"])) == [
        "test/vs_val overlaps val/apart",
        "test/vs_val overlaps val/overlap",
    ]
    assert not _overlaps(volumes["test/clean"])
    assert not _overlaps(volumes["train/tr"])  # the warning goes on the val/test side
    table = cli("data", "check", "--project", "p").stdout
    assert "val/overlap: warning: val/overlap overlaps train/tr" in table


def test_volumes_without_provenance_and_projects_without_val(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    # A project made before val/ existed: no val folder at all.
    shutil.rmtree(project / "val")
    assert Project(project).volumes("val") == []
    cli.ok("data", "synth", "--project", "p", "--shape", "24,32,32")
    code, volumes = _check(cli)
    assert code == 0 and list(volumes) == ["train/synth0"]
    # Importing into val/ creates the folder.
    cli.ok("data", "import", _stack(tmp_path / "s.h5"), "--project", "p", "--split", "val")
    assert (project / "val/s.zarr/raw").is_dir()
    # Volumes written before provenance (or by other tools), and one with a record this
    # version cannot read, are checked as before and never compared.
    raw = RNG.integers(0, 255, (20, 24, 24), dtype=np.uint8)
    labels = RNG.integers(1, 5, raw.shape).astype(np.uint64)
    write_volume(project / "train/old.zarr", raw, labels, [8, 8, 8])
    write_volume(project / "val/old.zarr", raw, labels, [8, 8, 8])
    write_volume(
        project / "test/odd.zarr", raw, labels, [8, 8, 8], attrs={"provenance": {"kind": "?"}}
    )
    code, volumes = _check(cli)
    assert code == 0
    assert volumes["val/old"]["provenance"] is None and not _overlaps(volumes["val/old"])
    assert volumes["test/odd"]["provenance"] is None and volumes["test/odd"]["usable"]
    assert provenance.read(project / "val/old.zarr") is None
