"""Training on a padded volume (raw larger than the labels, as CREMI's padded samples):
samples lie where the labels are, and their raw reaches into the padding for context."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data import volume as vol
from engine.data.synth import synthesize
from engine.project.config import from_preset
from engine.train.pipeline import build_training_pipeline

VOXEL = (8, 8, 8)
RAW_SHAPE = (48, 48, 48)
LABELLED = (slice(16, 32), slice(14, 34), slice(12, 36))  # voxels of raw
INPUT, OUTPUT = (24, 24, 24), (8, 8, 8)


def _padded_volume(path: Path, crop_raw_to_labels: bool = False) -> np.ndarray:
    raw, labels = synthesize(RAW_SHAPE, VOXEL, seed=4)
    raw = np.maximum(raw, 1)  # 0 only where padding would be: the tell-tale
    offset = [s.start * v for s, v in zip(LABELLED, VOXEL)]
    raw_offset = offset if crop_raw_to_labels else [0, 0, 0]
    data = raw[LABELLED] if crop_raw_to_labels else raw
    with vol.staged(path) as tmp:
        vol.create_array(tmp, vol.RAW, data.shape, np.uint8, VOXEL, raw_offset)[:] = data
        cut = labels[LABELLED]
        vol.create_array(tmp, vol.LABELS, cut.shape, np.uint64, VOXEL, offset)[:] = cut
        vol.create_array(tmp, vol.MASK, cut.shape, np.uint8, VOXEL, offset)[:] = 1
    return raw


def _batches(path: Path, count: int) -> list[dict[str, np.ndarray]]:
    config = from_preset(
        "tiny",
        {
            "preprocess": {"min_masked": 0.9},
            "train": {"augment": {"enabled": False}, "batch_size": 1},
        },
    )
    pipeline = build_training_pipeline(
        config,
        [path],
        input_shape=INPUT,
        lsds_shape=OUTPUT,
        affs_shape=OUTPUT,
        seed=5,
        num_workers=0,
    )
    with pipeline:
        return [pipeline.next_batch() for _ in range(count)]


def test_samples_near_the_label_border_take_raw_from_the_padding(tmp_path: Path) -> None:
    raw = _padded_volume(tmp_path / "padded.zarr")
    lowest = -1.0  # raw value 0 in the network's convention (minmax: [-1, 1])
    for batch in _batches(tmp_path / "padded.zarr", 12):
        x = batch["raw"][0, 0]
        # The input (24^3) is larger than the labels' margin allows: every sample
        # reaches beyond the labels, where only the padded raw has voxels.
        assert x.min() > lowest, "a sample saw zero padding where raw has data"
        # Outputs lie inside the labels (min_masked 0.9 of an all-ones mask).
        assert (batch["labels"] != 0).mean() > 0.5
        # The input is a window of the real raw: find it by its first row.
        scaled = np.rint((x + 1) / 2 * 255).astype(np.uint8)
        hits = np.argwhere(raw[: 48 - 23, : 48 - 23, : 48 - 23] == scaled[0, 0, 0])
        assert any(
            np.array_equal(raw[z : z + 24, y : y + 24, w : w + 24], scaled) for z, y, w in hits
        )


def test_without_padding_the_same_samples_see_zeros(tmp_path: Path) -> None:
    # The control: raw cut to the labels' region is padded with 0 by the pipeline.
    _padded_volume(tmp_path / "cut.zarr", crop_raw_to_labels=True)
    minima = [batch["raw"][0, 0].min() for batch in _batches(tmp_path / "cut.zarr", 4)]
    assert min(minima) == -1.0
