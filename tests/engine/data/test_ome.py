"""OME-NGFF 0.4 metadata beside funlib's: read back with ome-zarr (the reader napari uses),
for volumes, predictions (a channel axis) and training snapshots (an offset per array)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.axes import Axes
from ome_zarr.format import FormatV04
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from engine.data import ome
from engine.data.synth import synthesize
from engine.data.volume import create_array, open_array, write_volume
from engine.project import config as cfg
from engine.train.trainer import main as train_main
from tests.engine.train.train_runs import make_run_dir

VOXEL = (40, 4, 4)
OFFSET = (120, 8, 12)


def _first_image(container: Path) -> tuple[list[str], list[float], list[float], np.ndarray]:
    """(axis names, scale, translation, data) of the image ome-zarr reads from `container`."""
    node = next(iter(Reader(parse_url(str(container)))()))
    scale, translation = (t for t in node.metadata["coordinateTransformations"][0])
    names = [a["name"] for a in node.metadata["axes"]]
    return names, scale["scale"], translation["translation"], np.asarray(node.data[0])


def _entries(container: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    """Every multiscales entry of the container, checked with ome-zarr's own validators."""
    attrs = json.loads((container / ".zattrs").read_text())
    found = {}
    for entry in attrs["multiscales"]:
        assert entry["version"] == "0.4"
        Axes(entry["axes"], FormatV04()).validate()
        ndim = len(entry["axes"])
        transforms = [d["coordinateTransformations"] for d in entry["datasets"]]
        FormatV04().validate_coordinate_transformations(ndim, len(transforms), transforms)
        found[entry["name"]] = entry
    return found


def test_volume_arrays_read_back_to_scale_and_still_open_in_funlib(tmp_path: Path) -> None:
    raw, labels = synthesize((8, 20, 24), VOXEL, seed=1)
    volume = tmp_path / "vol.zarr"
    write_volume(volume, raw, labels, VOXEL, offset=OFFSET, attrs={"note": "kept"})

    names, scale, translation, data = _first_image(volume)
    assert names == ["z", "y", "x"]
    assert scale == list(VOXEL) and translation == list(OFFSET)
    assert np.array_equal(data, raw)
    entries = _entries(volume)
    assert list(entries) == ["raw", "labels", "labels_mask"]  # raw first: what readers show
    for name in entries:
        assert entries[name]["datasets"][0]["path"] == name
        assert ome.scale_and_translation(entries[name]) == (list(VOXEL), list(OFFSET))
        assert all(a["unit"] == "nanometer" for a in entries[name]["axes"])
    assert json.loads((volume / ".zattrs").read_text())["note"] == "kept"
    # The arrays stay where every existing reader looks for them.
    array = open_array(volume, "labels")
    assert tuple(array.voxel_size) == VOXEL and tuple(array.roi.offset) == OFFSET
    assert np.array_equal(zarr.open(str(volume / "labels"), mode="r")[...], labels)
    attrs = json.loads((volume / "raw" / ".zattrs").read_text())
    assert attrs["dimension_units"] == ["40 nm", "4 nm", "4 nm"]
    assert attrs["_ARRAY_DIMENSIONS"] == ["z", "y", "x"]


def test_predictions_get_a_channel_axis_and_segmentations_their_own_offset(
    tmp_path: Path,
) -> None:
    prediction = tmp_path / "pred.zarr"
    affs = np.arange(3 * 4 * 8 * 8, dtype=np.uint8).reshape(3, 4, 8, 8)
    create_array(prediction, "pred_affs", affs.shape, np.uint8, VOXEL, OFFSET)[:] = affs
    names, scale, translation, data = _first_image(prediction)
    assert names == ["c", "z", "y", "x"]
    assert scale == [1.0, *VOXEL] and translation == [0.0, *OFFSET]
    assert np.array_equal(data, affs)
    assert _entries(prediction)["pred_affs"]["axes"][0] == {"name": "c", "type": "channel"}

    segmentation = tmp_path / "seg.zarr"
    later = (OFFSET[0] + 40, OFFSET[1] + 4, OFFSET[2])
    for name in ("fragments", "segmentation_0.50"):
        create_array(segmentation, name, (3, 8, 8), np.uint64, VOXEL, later)[:] = 7
    entries = _entries(segmentation)
    assert list(entries) == ["fragments", "segmentation_0.50"]
    assert ome.scale_and_translation(entries["segmentation_0.50"]) == (list(VOXEL), list(later))
    # Written again (another offset): the entry is replaced, not added.
    create_array(segmentation, "fragments", (3, 8, 8), np.uint64, VOXEL, OFFSET)
    entries = _entries(segmentation)
    assert list(entries) == ["fragments", "segmentation_0.50"]
    assert ome.scale_and_translation(entries["fragments"])[1] == list(OFFSET)


@pytest.mark.slow
def test_snapshots_place_each_array_by_its_own_offset(tmp_path: Path) -> None:
    config = cfg.from_preset(
        "tiny",
        {
            "system": {"num_workers": 0},
            "train": {"iterations": 2, "snapshot_every": 2, "validate_every": 0},
        },
    )
    voxel = tuple(config.data.voxel_size)
    project = tmp_path / "proj"
    raw, labels = synthesize((56, 56, 56), voxel, seed=3)
    write_volume(project / "train" / "v.zarr", raw, labels, voxel)
    run_dir = make_run_dir(project, config)
    assert train_main([str(run_dir)]) == 0

    snapshot = run_dir / "snapshots" / "iteration_00000002.zarr"
    entries = _entries(snapshot)
    assert {"raw", "labels", "gt_affs", "pred_affs", "gt_lsds", "pred_lsds"} <= set(entries)
    raw_array = open_array(snapshot, "raw")
    assert raw_array.data.shape == tuple(config.model.input_shape)  # no channel axis
    assert tuple(raw_array.roi.offset) == (0, 0, 0)
    output = np.array(open_array(snapshot, "pred_affs").data.shape[1:])
    expected = (np.array(config.model.input_shape) - output) // 2 * np.array(voxel)
    assert expected.min() > 0  # the output is smaller than the input: offsets matter
    for name in ("labels", "gt_affs", "pred_affs", "gt_lsds", "pred_lsds"):
        array = open_array(snapshot, name)
        assert tuple(array.voxel_size) == voxel
        assert tuple(array.roi.offset) == tuple(expected), name
        assert raw_array.roi.contains(array.roi)
        scale, translation = ome.scale_and_translation(entries[name])
        assert translation[-3:] == list(expected) and scale[-3:] == list(voxel)
    names, scale, translation, data = _first_image(snapshot)
    assert names == ["z", "y", "x"] and translation == [0.0, 0.0, 0.0]
    assert np.array_equal(data, raw_array.data[...])
