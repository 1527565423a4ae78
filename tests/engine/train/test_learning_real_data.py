"""Training learns on real EM (../shared/data; skipped without it). In a file of their own
so that the test processes share the slow learning tests (pytest-xdist, --dist loadfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.contract import read_events
from engine.data.volume import write_volume
from engine.project import config as cfg
from tests.conftest import SHARED_DATA
from tests.engine.train.train_runs import make_run_dir, train_loss_drop


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
def test_3d_model_learns_on_gala_and_validation_sees_it(tmp_path: Path) -> None:
    """Sections 0-29 train, 30-34 validate (as in the gala recipe): the loss falls, and
    the validation VOI at the last point is below the first."""
    import h5py

    config = cfg.from_preset(
        "tiny",
        {
            "data": {"voxel_size": [10, 10, 10]},
            "system": {"num_workers": 0, "cache_size": 1},
            "train": {
                "iterations": 200,
                "checkpoint_every": 200,
                "seed": 1,
                "validate_every": 25,
            },
            "model": {"num_fmaps": 4, "fmap_inc_factor": 3, "input_shape": [36, 36, 36]},
            "segment": {"min_seed_distance": 8},
        },
    )
    with h5py.File(SHARED_DATA / "gala" / "train-image.h5") as f:
        raw = f["stack"][:35]
    with h5py.File(SHARED_DATA / "gala" / "train-gt.lzf.h5") as f:
        labels = f["stack"][:35].astype(np.uint64)
    project = tmp_path / "proj"
    write_volume(project / "train" / "gala.zarr", raw[:30], labels[:30], [10, 10, 10])
    write_volume(
        project / "val" / "gala_val.zarr", raw[30:], labels[30:], [10, 10, 10], offset=[300, 0, 0]
    )
    run_dir = make_run_dir(project, config)
    first, last = train_loss_drop(run_dir, 20, "gala 3D")
    assert last < 0.8 * first
    events, _ = read_events(run_dir / "events.jsonl")
    points = [e for e in events if e["type"] == "validation"]
    assert [p["step"] for p in points] == list(range(25, 201, 25))
    print("gala validation VOI:", " ".join(f"{p['step']}:{p['voi']:.3f}" for p in points))
    assert points[-1]["voi"] < points[0]["voi"]
