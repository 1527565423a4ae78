"""`lsdctl data import` on real files of every supported format, and every refusal."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from engine.data.volume import open_array
from tests.conftest import SHARED_DATA, CliCaller, tree

RNG = np.random.default_rng(7)
RAW = RNG.integers(0, 255, (12, 40, 50), dtype=np.uint8)
LABELS = RNG.integers(0, 20, (12, 40, 50)).astype(np.uint64)


@pytest.fixture
def project(cli: CliCaller, projects: Path) -> Path:
    cli.ok("init", "p", "--preset", "tiny")  # 3D, voxel 8,8,8
    return projects / "p"


def _read(project: Path, split: str, name: str, array: str) -> np.ndarray:
    return np.asarray(zarr.open(str(project / split / f"{name}.zarr" / array), mode="r")[:])


def _cremi(path: Path, raw: np.ndarray = RAW, labels: np.ndarray = LABELS) -> Path:
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = raw
        f["volumes/raw"].attrs["resolution"] = (40.0, 4.0, 4.0)
        f["volumes/labels/neuron_ids"] = labels
        f["volumes/labels/neuron_ids"].attrs["resolution"] = (40.0, 4.0, 4.0)
        f["volumes/labels/neuron_ids"].attrs["offset"] = (0.0, 0.0, 0.0)
    return path


def test_cremi_hdf5_keys_and_resolution_found(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    result = cli.ok("data", "import", _cremi(tmp_path / "sample_A.hdf"), "--project", "p")
    assert "train/sample_A.zarr" in result.stdout
    assert "differs from the project's" in result.stdout  # 40,4,4 vs the tiny preset's 8,8,8
    raw = open_array(project / "train/sample_A.zarr", "raw")
    assert tuple(raw.voxel_size) == (40, 4, 4)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(_read(project, "train", "sample_A", "raw"), RAW)
    labels = _read(project, "train", "sample_A", "labels")
    assert labels.dtype == np.uint64
    np.testing.assert_array_equal(labels, LABELS)
    assert _read(project, "train", "sample_A", "labels_mask").min() == 1


def test_any_hdf5_by_key_with_separate_labels_mask_offset(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    with h5py.File(tmp_path / "img.h5", "w") as f:
        f["a/em"] = RAW
        f["other"] = np.zeros(3)
    with h5py.File(tmp_path / "gt.h5", "w") as f:
        f["seg"] = LABELS.astype(np.int32)
    mask = np.zeros(RAW.shape, np.uint8)
    mask[:, :20] = 7
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    cli.ok(
        "data",
        "import",
        tmp_path / "img.h5",
        "--raw-key",
        "a/em",
        "--labels",
        tmp_path / "gt.h5",
        "--mask",
        tmp_path / "mask.tif",
        "--project",
        "p",
        "--name",
        "v1",
        "--offset",
        "16,0,8",
        "--split",
        "test",
    )
    raw = open_array(project / "test/v1.zarr", "raw")
    assert tuple(raw.offset) == (16, 0, 8) and tuple(raw.voxel_size) == (8, 8, 8)
    np.testing.assert_array_equal(
        _read(project, "test", "v1", "labels_mask"), (mask > 0).astype(np.uint8)
    )


def test_tiff_stack_and_2d_images(cli: CliCaller, projects: Path, tmp_path: Path) -> None:
    cli.ok("init", "p3", "--preset", "tiny")
    tifffile.imwrite(tmp_path / "raw.tif", RAW)
    tifffile.imwrite(tmp_path / "labels.tif", LABELS)
    cli.ok(
        "data",
        "import",
        tmp_path / "raw.tif",
        "--labels",
        tmp_path / "labels.tif",
        "--project",
        "p3",
    )
    np.testing.assert_array_equal(_read(projects / "p3", "train", "raw", "labels"), LABELS)
    # A 2D image into a 2D project stays 2D; into a 3D project it becomes one section.
    cli.ok("init", "p2", "--preset", "tiny2d")
    tifffile.imwrite(tmp_path / "img2d.tif", RAW[0])
    tifffile.imwrite(tmp_path / "lab2d.tif", LABELS[0])
    cli.ok(
        "data",
        "import",
        tmp_path / "img2d.tif",
        "--labels",
        tmp_path / "lab2d.tif",
        "--project",
        "p2",
    )
    assert _read(projects / "p2", "train", "img2d", "raw").shape == (40, 50)
    assert tuple(open_array(projects / "p2/train/img2d.zarr", "raw").voxel_size) == (4, 4)
    cli.ok(
        "data",
        "import",
        tmp_path / "img2d.tif",
        "--labels",
        tmp_path / "lab2d.tif",
        "--project",
        "p3",
    )
    assert _read(projects / "p3", "train", "img2d", "raw").shape == (1, 40, 50)


def test_zarr_and_n5_sources(cli: CliCaller, project: Path, tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "src.zarr"), mode="w")
    root["raw"] = RAW
    root["raw"].attrs["resolution"] = [8, 8, 8]
    root["labels"] = LABELS
    cli.ok("data", "import", tmp_path / "src.zarr", "--project", "p", "--name", "z")
    np.testing.assert_array_equal(_read(project, "train", "z", "labels"), LABELS)
    n5 = zarr.open_group(zarr.N5Store(str(tmp_path / "src.n5")), mode="w")
    n5["volumes/raw"] = RAW
    n5["volumes/labels/neuron_ids"] = LABELS
    cli.ok("data", "import", tmp_path / "src.n5", "--project", "p", "--name", "n")
    np.testing.assert_array_equal(_read(project, "train", "n", "raw"), RAW)


def test_uint16_and_float_raw_are_scaled_to_uint8(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["raw"] = RAW.astype(np.float32) / 255.0 * 3.0 + 1.0
        f["labels"] = LABELS
    result = cli.ok("data", "import", tmp_path / "f.h5", "--project", "p", "--name", "f")
    assert "scaled from" in result.stdout
    raw = _read(project, "train", "f", "raw")
    assert raw.min() == 0 and raw.max() == 255
    assert (
        np.abs(
            raw.astype(int) - (RAW.astype(int) - RAW.min()) * 255 / (RAW.max() - RAW.min())
        ).max()
        <= 1
    )


def test_crop_keeps_world_coordinates(cli: CliCaller, project: Path, tmp_path: Path) -> None:
    _cremi(tmp_path / "c.hdf")
    cli.ok(
        "data",
        "import",
        tmp_path / "c.hdf",
        "--project",
        "p",
        "--crop",
        "5:,:,10:30",
        "--voxel-size",
        "8,8,8",
    )
    raw = open_array(project / "train/c.zarr", "raw")
    assert tuple(raw.offset) == (40, 0, 80) and tuple(raw.shape) == (7, 40, 20)
    np.testing.assert_array_equal(_read(project, "train", "c", "raw"), RAW[5:, :, 10:30])


def test_existing_volume_needs_overwrite(cli: CliCaller, project: Path, tmp_path: Path) -> None:
    src = _cremi(tmp_path / "c.hdf")
    cli.ok("data", "import", src, "--project", "p")
    before = tree(project)
    cli.bad("data", "import", src, "--project", "p", match="already exists")
    assert tree(project) == before
    cli.ok("data", "import", src, "--project", "p", "--overwrite")


def _h5(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
    return path


BAD = {
    "missing file": (lambda d: ["data", "import", d / "nope.h5"], "does not exist"),
    "missing key": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--raw-key", "volumes/nope"],
        "has no dataset 'volumes/nope'",
    ),
    "ambiguous key": (lambda d: ["data", "import", _h5(d / "a.h5", x=RAW, y=RAW)], "--raw-key"),
    "shape mismatch": (
        lambda d: ["data", "import", _h5(d / "s.h5", raw=RAW, labels=LABELS[:, :30])],
        "must cover the same voxels",
    ),
    "float labels": (
        lambda d: ["data", "import", _h5(d / "fl.h5", raw=RAW, labels=LABELS.astype(np.float32))],
        "not integers",
    ),
    "negative labels": (
        lambda d: ["data", "import", _h5(d / "n.h5", raw=RAW, labels=-LABELS.astype(np.int64) - 1)],
        "negative",
    ),
    "nan raw": (
        lambda d: [
            "data",
            "import",
            _h5(d / "nan.h5", raw=np.where(RAW > 250, np.nan, RAW / 1.0), labels=LABELS),
        ],
        "nan",
    ),
    "zero voxel": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--voxel-size", "0,4,4"],
        "positive",
    ),
    "voxel arity": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--voxel-size", "4,4"],
        "needs 3 values",
    ),
    "voxel text": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--voxel-size", "4,a,4"],
        "whole numbers",
    ),
    "bad split": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--split", "validation"],
        "unknown split 'validation': use train, val or test",
    ),
    "bad name": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--name", "../up"],
        "invalid volume name",
    ),
    "no labels for training": (lambda d: ["data", "import", _h5(d / "r.h5", raw=RAW)], "no labels"),
    "unknown format": (lambda d: ["data", "import", _h5(d / "x.txt", raw=RAW)], "cannot read"),
    "offset not on grid": (
        lambda d: [
            "data",
            "import",
            _cremi(d / "c.hdf"),
            "--voxel-size",
            "8,8,8",
            "--offset",
            "3,0,0",
        ],
        "not a multiple",
    ),
    "3d into 2d project": (
        lambda d: ["data", "import", _cremi(d / "c.hdf"), "--project", "flat"],
        "project is 2d",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_nothing_written(
    cli: CliCaller, project: Path, projects: Path, tmp_path: Path, case: str
) -> None:
    cli.ok("init", "flat", "--preset", "tiny2d")
    make_args, match = BAD[case]
    src = tmp_path / "src"
    src.mkdir()
    args = [str(a) for a in make_args(src)]
    if "--project" not in args:
        args += ["--project", "p"]
    before = tree(projects)
    cli.bad(*args, match=match)
    assert tree(projects) == before


def test_unknown_project(cli: CliCaller, projects: Path, tmp_path: Path) -> None:
    cli.bad(
        "data",
        "import",
        _cremi(tmp_path / "c.hdf"),
        "--project",
        "ghost",
        match="no project 'ghost'",
    )


@pytest.mark.skipif(not (SHARED_DATA / "gala").is_dir(), reason="shared gala data not present")
def test_real_em_volume_gala(cli: CliCaller, project: Path) -> None:
    gala = SHARED_DATA / "gala"
    cli.ok(
        "data",
        "import",
        gala / "train-image.h5",
        "--labels",
        gala / "train-gt.lzf.h5",
        "--raw-key",
        "stack",
        "--labels-key",
        "stack",
        "--voxel-size",
        "10,10,10",
        "--project",
        "p",
        "--name",
        "gala",
    )
    raw = open_array(project / "train/gala.zarr", "raw")
    labels = _read(project, "train", "gala", "labels")
    assert tuple(raw.shape) == (50, 100, 200) and raw.dtype == np.uint8
    assert tuple(raw.voxel_size) == (10, 10, 10)
    assert labels.dtype == np.uint64 and labels.shape == (50, 100, 200)
    ids = np.unique(labels)
    assert ids[0] == 0 and len(ids) == 88  # 87 neuron ids + background
