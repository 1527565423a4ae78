"""Training learns on real EM (../shared/data; skipped without it). In a file of their own
so that the test processes share the slow learning tests (pytest-xdist, --dist loadfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import config as cfg
from engine.data.volume import write_volume
from tests.conftest import SHARED_DATA
from tests.engine.train_runs import make_run_dir, train_loss_drop


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "lsd-tutorial-2d").is_dir(), reason="shared 2D data absent")
def test_2d_model_learns_on_the_lsd_tutorial_patches(tmp_path: Path) -> None:
    import tifffile

    config = cfg.from_preset(
        "tiny2d",
        {
            "system": {"num_workers": 0, "cache_size": 1},
            # 4x the preset's learning rate: 100 iterations take the loss 0.293 -> 0.179.
            "train": {
                "iterations": 100,
                "checkpoint_every": 100,
                "validate_every": 0,
                "seed": 1,
                "learning_rate": 4e-3,
            },
        },
    )
    project = tmp_path / "proj"
    for i in range(15):
        raw = tifffile.imread(SHARED_DATA / "lsd-tutorial-2d" / f"raw_{i}.tif")
        labels = tifffile.imread(SHARED_DATA / "lsd-tutorial-2d" / f"labels_{i}.tif")
        write_volume(project / "train" / f"p{i}.zarr", raw, labels.astype(np.uint64), [4, 4])
    first, last = train_loss_drop(make_run_dir(project, config), 20, "2D tutorial")
    assert last < 0.8 * first


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "gala").is_dir(), reason="shared gala data absent")
def test_3d_model_learns_on_gala(tmp_path: Path) -> None:
    import h5py

    config = cfg.from_preset(
        "tiny",
        {
            "data": {"voxel_size": [10, 10, 10]},
            "system": {"num_workers": 0, "cache_size": 1},
            "train": {"iterations": 200, "checkpoint_every": 200, "seed": 1},
            "model": {"num_fmaps": 4, "fmap_inc_factor": 3, "input_shape": [36, 36, 36]},
        },
    )
    with h5py.File(SHARED_DATA / "gala" / "train-image.h5") as f:
        raw = f["stack"][:35]
    with h5py.File(SHARED_DATA / "gala" / "train-gt.lzf.h5") as f:
        labels = f["stack"][:35].astype(np.uint64)
    project = tmp_path / "proj"
    write_volume(project / "train" / "gala.zarr", raw, labels, [10, 10, 10])
    first, last = train_loss_drop(make_run_dir(project, config), 20, "gala 3D")
    assert last < 0.8 * first
