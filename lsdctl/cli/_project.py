"""Which project a command acts on: implied by where it runs, as git implies the repository.

In order:
1. `--project NAME`, looked up in the projects root in effect;
2. the project whose folder holds the working directory (a `project.toml` in it or in a
   folder above it), wherever that folder is;
3. `$LSDCTL_PROJECT`;
4. the only project in the projects root.
Otherwise the command fails with one line that lists the projects to choose from.

The projects root in effect is `$LSDCTL_PROJECTS`, else the folder holding the
enclosing project, else `./projects`, else the working directory when it holds projects
itself (you are in the projects folder). The second case matters: inside
`projects/brain1/` the default `./projects` would be `projects/brain1/projects`, so
`--project brain2` (or `lsdctl init brain2`) would look in, or create, the wrong place.

Listings (`lsdctl runs`, the TUI's runs) narrow to a project only when the context says
so explicitly (2 and 3): the only project there is is no reason to hide other runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from engine.errors import InputError
from engine.project.layout import CONFIG_FILE, Project, list_projects, projects_root

ENV_PROJECT = "LSDCTL_PROJECT"
ENV_ROOT = "LSDCTL_PROJECTS"
# Names listed in the error when no project is implied; beyond this, a count.
_LISTED = 12

PROJECT_HELP = (
    "default: the project whose folder you are in, else $LSDCTL_PROJECT, else the only project"
)


def project_option(what: str = "The project") -> Any:
    """`--project/-P NAME`, optional: every command that acts on one project takes it."""
    return typer.Option(
        None,
        "--project",
        "-P",
        help=f"{what} ({PROJECT_HELP}).",
        autocompletion=complete_project,
    )


def complete_project(incomplete: str) -> list[str]:
    """Shell completion of --project: the names in the projects root in effect."""
    return [p.name for p in list_projects(root_in_effect()) if p.name.startswith(incomplete)]


def enclosing_project(start: Path | None = None) -> Project | None:
    """The project whose folder holds `start` (default: the working directory), if any."""
    here = start.absolute() if start is not None else _cwd()
    if here is None:
        return None
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return Project(folder)
    return None


def root_in_effect() -> Path:
    """Where project names are looked up and new projects are made (see the module doc)."""
    if ENV_ROOT in os.environ:
        return projects_root()
    found = enclosing_project()
    if found is not None:
        return found.path.parent
    default = projects_root()
    here = _cwd()
    if here is not None and not default.is_dir() and list_projects(here):
        return here
    return default


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # the working directory was removed under us: no context from it
        return None


def context_project() -> Project | None:
    """The project the context names explicitly: the enclosing folder, else $LSDCTL_PROJECT.

    None when neither does (the only project there is does not count here).
    """
    found = enclosing_project()
    if found is not None:
        return found
    named = os.environ.get(ENV_PROJECT)
    if named:
        try:
            return Project.open(named, root_in_effect())
        except InputError as exc:
            raise InputError(f"${ENV_PROJECT}: {exc}") from None
    return None


def resolve_project(name: str | None) -> Project:
    """The project a command acts on: `name` (from --project), else the implied one.

    InputError (exit 2, one line) when `name` does not exist or nothing implies a project.
    """
    root = root_in_effect()
    if name is not None:
        return Project.open(name, root)
    implied = context_project()
    if implied is not None:
        return implied
    existing = list_projects(root)
    if len(existing) == 1:
        return existing[0]
    if not existing:
        raise InputError(
            f"no project here and none in {root.absolute()}: `lsdctl init NAME` creates one "
            f"(projects live in ${ENV_ROOT}, default ./projects)"
        )
    names = [p.name for p in existing]
    shown = ", ".join(names[:_LISTED])
    if len(names) > _LISTED:
        shown += f" and {len(names) - _LISTED} more"
    raise InputError(
        f"which project? pass --project NAME (in {root.absolute()}: {shown}), run it inside a "
        f"project's folder, or set ${ENV_PROJECT}"
    )
