"""Volumes named to predict are found by name in test/, val/ and train/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.data.volume import write_volume
from engine.errors import InputError
from engine.project.layout import init_project
from engine.runs.resolve import fill_inputs
from tests.checkpoint_files import write_checkpoint


def test_predict_finds_volumes_by_name_in_every_split(tmp_path: Path) -> None:
    project = init_project("p", preset="tiny", root=tmp_path)
    raw = np.zeros((8, 8, 8), np.uint8)
    for split, name in (("train", "a"), ("val", "v"), ("test", "t")):
        write_volume(project.split_dir(split) / f"{name}.zarr", raw, None, (8, 8, 8))
    weights = write_checkpoint(tmp_path / "w.pt", project.path)
    inputs, _ = fill_inputs(
        project, "predict", {"checkpoint": str(weights), "volumes": ["t", "v", "a.zarr"]}
    )
    assert inputs["volumes"] == [
        str((project.path / split / f"{name}.zarr").resolve())
        for split, name in (("test", "t"), ("val", "v"), ("train", "a"))
    ]
    with pytest.raises(InputError, match="p/test, p/val or p/train"):
        fill_inputs(project, "predict", {"checkpoint": str(weights), "volumes": ["nope"]})
