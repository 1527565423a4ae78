"""Validation during training, the light part: which volumes, what a point records.

Every `train.validate_every` iterations a training run scores its current weights on the
project's `val/` volumes (engine.train.validator does the work). The threshold with the lowest
VOI is the point's threshold; the checkpoint of the lowest VOI is the run's best, and its
threshold travels with it to predict, segment and evaluate.

Imported by the resolver, and so by the CLI: no torch, zarr, waterz or daisy here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.models.registry import model_type_spec
from engine.project.config import ProjectConfig

logger = logging.getLogger(__name__)

# What a validation point records beside its checkpoint (best.json) and what predictions
# of that checkpoint carry to segment and evaluate.
RECORD_KEYS = ("step", "threshold", "voi_split", "voi_merge", "voi", "arand")
# The group attribute of predictions and segmentations that carries that record (with
# train_run and iteration): written by predict, copied by segment, read by evaluate.
VALIDATION_ATTR = "validation"


def can_validate(config: ProjectConfig) -> bool:
    """Whether the run validates: a cadence is set and the model predicts affinities."""
    return config.train.validate_every > 0 and model_type_spec(config.train.model_type).segmentable


def val_volumes(project: Path, config: ProjectConfig, listed: list[str] | None) -> list[Path]:
    """The validation volumes a train run uses (`listed`, else PROJECT/val/*.zarr).

    InputError when validation is on and there is none, or one has no labels to score
    against. Empty when the run does not validate.
    """
    if not can_validate(config):
        return []
    if listed:
        volumes = [Path(v) for v in listed]
    else:
        folder = project / "val"
        volumes = sorted(p for p in folder.glob("*.zarr") if p.is_dir()) if folder.is_dir() else []
    name = project.name
    if not volumes:
        raise InputError(
            f"train.validate_every is {config.train.validate_every} but project {name} has no "
            f"validation volumes: add one with `lsdctl data import FILE --project {name} "
            f"--split val --crop …` (or `lsdctl data synth --project {name} --split val`), or "
            f"train without validation: `lsdctl config set {name} train.validate_every 0`"
        )
    for volume in volumes:
        if not volume.is_dir() or not (volume / "raw").is_dir():
            raise InputError(f"validation volume {volume} not found, or it has no raw array")
        voxel_size = _voxel_size(volume / "raw")
        if voxel_size is not None and voxel_size != list(config.data.voxel_size):
            raise InputError(
                f"validation volume {volume.parent.name}/{volume.stem} has voxel size "
                f"{voxel_size}, the model trains at {list(config.data.voxel_size)}: "
                "validate on volumes of the training resolution"
            )
        if not (volume / "labels").is_dir():
            raise InputError(
                f"validation volume {volume.parent.name}/{volume.stem} has no labels: validation "
                "scores the segmentation against them; import it again with --labels"
            )
    return volumes


@dataclass(frozen=True)
class ValidationResult:
    """One validation point: scores at the point's threshold, per volume and overall."""

    step: int
    voi_split: float
    voi_merge: float
    voi: float
    arand: float
    threshold: float
    volumes: dict[str, dict[str, Any]]
    per_threshold: list[dict[str, Any]]
    seconds: float

    def event(self) -> dict[str, Any]:
        """The fields of the `validation` event (DESIGN.md's run-directory contract)."""
        return {
            "step": self.step,
            "voi_split": self.voi_split,
            "voi_merge": self.voi_merge,
            "voi": self.voi,
            "arand": self.arand,
            "threshold": self.threshold,
            "volumes": self.volumes,
            "seconds": round(self.seconds, 3),
        }

    def record(self) -> dict[str, Any]:
        """What travels with the checkpoint (best.json, predictions' attributes)."""
        return {key: getattr(self, key) for key in RECORD_KEYS}


@dataclass
class History:
    """The validation points of a run so far: the best, and how long since it."""

    best: dict[str, Any] | None = None
    since_best: int = 0
    steps: list[int] = field(default_factory=list)

    def add(self, step: int, voi: float, record: dict[str, Any]) -> bool:
        """Record a point; True when it is the new best (ties: the earlier stays)."""
        self.steps.append(step)
        if self.best is None or voi < float(self.best["voi"]):
            # The checkpoint of a validation point is the one of its iteration.
            self.best = {**record, "step": step, "iteration": step}
            self.since_best = 0
            return True
        self.since_best += 1
        return False

    @classmethod
    def from_events(cls, events: list[dict[str, Any]], up_to: int) -> History:
        """The history a resumed run continues: its validation events up to `up_to`
        (the checkpoint it resumes from; later points belong to lost iterations)."""
        history = cls()
        points: dict[int, dict[str, Any]] = {}
        for event in events:
            step = event.get("step")
            if event.get("type") == "validation" and isinstance(step, int) and step <= up_to:
                points[step] = event  # a repeated step: the later attempt's
        for step in sorted(points):
            event = points[step]
            voi = event.get("voi")
            if voi is None:
                continue
            history.add(step, float(voi), {k: event.get(k) for k in RECORD_KEYS})
        return history


def _voxel_size(array: Path) -> list[int] | None:
    """An array's voxel size from its funlib attributes, read without zarr."""
    try:
        attrs = json.loads((array / ".zattrs").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(attrs, dict):
        return None
    found = attrs.get("voxel_size") or attrs.get("resolution")
    return [int(v) for v in found] if isinstance(found, list) else None
