"""A real checkpoint file for a project's config: what predict --checkpoint and train
--init-from accept (the resolver checks that a named file is one whose layers fit)."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.models import build_model
from engine.project import config as cfg


def write_checkpoint(path: Path, project: Path) -> Path:
    """Untrained weights of the model `project`'s config builds, saved at `path`."""
    config = cfg.load(project / "project.toml")
    model = build_model(
        config.train.model_type,
        config.model,
        config.data.dims,
        len(config.affinity_neighborhood()),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_type": config.train.model_type.value}, path)
    return path
