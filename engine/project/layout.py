"""The on-disk layout of a project: `ROOT/NAME/{project.toml,train/,val/,test/,runs/}`.

`ROOT` is `$LSDCTL_PROJECTS`, or `./projects`. Volumes are zarr containers in `train/`
(what training samples from), `val/` (what chooses the checkpoint and the segmentation
threshold) and `test/` (what predict and evaluate use). Projects made before `val/`
existed have no such folder: they simply have no validation volumes.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.project import config as cfg

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SPLITS = ("train", "val", "test")
# Splits whose volumes must have labels: training learns from them, validation scores them.
LABELLED_SPLITS = ("train", "val")
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
CONFIG_FILE = "project.toml"


def splits_text() -> str:
    """`train, val or test`: for messages that list the splits."""
    return f"{', '.join(SPLITS[:-1])} or {SPLITS[-1]}"


def projects_root() -> Path:
    return Path(os.environ.get("LSDCTL_PROJECTS", "projects"))


def check_name(name: str, what: str = "project name") -> str:
    """Names become folder names: no paths, no dots first, at most 64 characters."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise InputError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no slashes)"
        )
    return name


@dataclass(frozen=True)
class Project:
    """A project folder; `Project.open` checks that it exists."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def split_dir(self, split: str) -> Path:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: use {splits_text()}")
        return self.path / split

    def volumes(self, split: str) -> list[Path]:
        folder = self.split_dir(split)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*.zarr") if p.is_dir())

    def load_config(self) -> cfg.ProjectConfig:
        return cfg.load(self.config_path)

    def save_config(self, config: cfg.ProjectConfig) -> None:
        cfg.save(config, self.config_path)

    @classmethod
    def open(cls, name: str, root: Path | None = None) -> Project:
        check_name(name)
        path = (root or projects_root()) / name
        if not (path / CONFIG_FILE).is_file():
            hint = f"`lsdctl init {name}` creates it"
            if (root or projects_root()).is_dir():
                existing = list_projects(root)
                if existing:
                    hint += f"; existing projects: {', '.join(p.name for p in existing)}"
            raise InputError(f"no project {name!r} in {path.parent}: {hint}")
        return cls(path)


def list_projects(root: Path | None = None) -> list[Project]:
    base = root or projects_root()
    if not base.is_dir():
        return []
    return [Project(p) for p in sorted(base.iterdir()) if (p / CONFIG_FILE).is_file()]


def init_project(
    name: str, preset: str = cfg.DEFAULT_PRESET, force: bool = False, root: Path | None = None
) -> Project:
    """Create the project folder with a validated `project.toml` from `preset`.

    With `force`, an existing project's config is rewritten from the preset; its volumes
    and runs are kept.
    """
    check_name(name)
    config = cfg.from_preset(preset)  # validate before anything touches the disk
    path = (root or projects_root()) / name
    if path.exists() and not force:
        what = "project" if (path / CONFIG_FILE).exists() else "folder"
        raise InputError(
            f"{what} {path} already exists: pick another name, or pass --force to rewrite its "
            "config from the preset (volumes and runs are kept)"
        )
    created = not path.exists()
    try:
        for sub in (*SPLITS, "runs"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        project = Project(path)
        project.save_config(config)
    except OSError as exc:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise InputError(f"cannot create {path}: {exc.strerror}") from None
    return project
