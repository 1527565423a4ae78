"""`lsdctl data import` of CREMI's padded samples: raw larger than the labels, the labels
(and their mask) placed by their own `offset` attribute; `data check` on such volumes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from engine.data.volume import open_array
from tests.conftest import CliCaller, tree

VOXEL = (40, 4, 4)
RNG = np.random.default_rng(3)
RAW = RNG.integers(1, 255, (14, 60, 64), dtype=np.uint8)
# The labelled region, in voxels of raw: sections 4..10, y 12..42, x 20..52.
LABELLED = (slice(4, 10), slice(12, 42), slice(20, 52))
LABELS = RNG.integers(1, 30, tuple(s.stop - s.start for s in LABELLED)).astype(np.uint64)
MASK = np.ones(LABELS.shape, np.uint8)
MASK[:, :5] = 0


def _offset_nm(slices: tuple[slice, ...] = LABELLED) -> tuple[float, ...]:
    return tuple(float(s.start * v) for s, v in zip(slices, VOXEL))


def padded_cremi(path: Path, labels_offset: tuple[float, ...] | None = None) -> Path:
    """A file laid out as CREMI's padded, realigned samples: `volumes/raw` with a
    resolution and no offset; `volumes/labels/neuron_ids` and `volumes/labels/mask`
    smaller, each with its offset in nm."""
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = RAW
        f["volumes/raw"].attrs["resolution"] = [float(v) for v in VOXEL]
        for key, data in (("neuron_ids", LABELS), ("mask", MASK)):
            f[f"volumes/labels/{key}"] = data
            f[f"volumes/labels/{key}"].attrs["resolution"] = [float(v) for v in VOXEL]
            f[f"volumes/labels/{key}"].attrs["offset"] = labels_offset or _offset_nm()
    return path


@pytest.fixture
def project(cli: CliCaller, projects: Path) -> Path:
    cli.ok("init", "c", "--preset", "cremi")
    return projects / "c"


def _read(project: Path, name: str, array: str) -> np.ndarray:
    return np.asarray(zarr.open(str(project / "train" / f"{name}.zarr" / array), mode="r")[:])


def test_labels_keep_their_own_region_inside_raw(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    src = padded_cremi(tmp_path / "sample_A_padded.hdf")
    result = cli.ok("data", "import", src, "--project", "c", "--json")
    report = json.loads(result.stdout)
    assert report["shape"] == list(RAW.shape) and report["offset"] == [0, 0, 0]
    assert report["labels_shape"] == list(LABELS.shape)
    assert report["labels_offset"] == [int(o) for o in _offset_nm()]
    volume = project / "train/sample_A_padded.zarr"
    raw, labels, mask = (open_array(volume, n) for n in ("raw", "labels", "labels_mask"))
    assert tuple(raw.offset) == (0, 0, 0) and tuple(raw.shape) == RAW.shape
    assert tuple(labels.offset) == tuple(int(o) for o in _offset_nm())
    assert labels.roi == mask.roi and raw.roi.contains(labels.roi)
    np.testing.assert_array_equal(_read(project, "sample_A_padded", "raw"), RAW)
    np.testing.assert_array_equal(_read(project, "sample_A_padded", "labels"), LABELS)
    # The mask came from the file's volumes/labels/mask, unasked.
    np.testing.assert_array_equal(_read(project, "sample_A_padded", "labels_mask"), MASK)
    # The labels sit where their offset says: the same world voxel in both arrays.
    z, y, x = (s.start for s in LABELLED)
    assert labels.data[0, 0, 0].compute() == LABELS[0, 0, 0]
    assert raw.data[z, y, x].compute() == RAW[z, y, x]

    check = json.loads(cli.ok("data", "check", "--project", "c", "--json").stdout)
    (found,) = check["volumes"]
    assert found["usable"], found["problems"]
    # 6 x 30 x 32 labels with 4/12/12 voxels of raw around them: less than the cremi
    # net's context, which data check says.
    assert any("zero padding" in p["message"] for p in found["problems"])


def test_crop_keeps_the_part_of_the_labels_inside_it(
    cli: CliCaller, project: Path, tmp_path: Path
) -> None:
    src = padded_cremi(tmp_path / "s.hdf")
    cli.ok("data", "import", src, "--project", "c", "--crop", "6:,:30,:")
    labels = open_array(project / "train/s.zarr", "labels")
    assert tuple(labels.offset) == (6 * 40, 12 * 4, 20 * 4)
    assert tuple(labels.shape) == (4, 18, 32)
    np.testing.assert_array_equal(_read(project, "s", "labels"), LABELS[2:, :18])
    np.testing.assert_array_equal(_read(project, "s", "raw"), RAW[6:, :30])


REFUSED = {
    "off the voxel grid": ((160.0, 50.0, 80.0), "not on raw's voxel grid"),
    "beyond raw": ((400.0, 48.0, 80.0), "must lie inside raw"),
    "before raw": ((-40.0, 48.0, 80.0), "must lie inside raw"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_misplaced_labels_are_refused_nothing_written(
    cli: CliCaller, project: Path, projects: Path, tmp_path: Path, case: str
) -> None:
    offset, match = REFUSED[case]
    src = padded_cremi(tmp_path / "bad.hdf", labels_offset=offset)
    before = tree(projects)
    cli.bad("data", "import", src, "--project", "c", match=match)
    assert tree(projects) == before


def test_crop_without_labels_is_refused(cli: CliCaller, project: Path, tmp_path: Path) -> None:
    src = padded_cremi(tmp_path / "s.hdf")
    cli.bad(
        "data", "import", src, "--project", "c", "--crop", "0:3,:,:", match="none of the labels"
    )
