"""`lsdctl config show|get|set|validate|edit|import|presets`: a project's configuration."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import typer

from engine import config as cfg
from engine.errors import InputError
from engine.project import Project
from lsdctl.cli._guard import guarded

app = typer.Typer(
    help="Show, change and check a project's configuration (project.toml).",
    no_args_is_help=True,
)

_NAME = typer.Argument(..., help="Project name.")


@app.command("show")
@guarded
def show(
    project: str = _NAME,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON instead of documented TOML."),
) -> None:
    """Print the whole validated configuration, each key with its documentation."""
    config = Project.open(project).load_config()
    if as_json:
        typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        typer.echo(cfg.dump(config), nl=False)


@app.command("get")
@guarded
def get(
    project: str = _NAME,
    key: str = typer.Argument(..., help="Dotted key, e.g. train.iterations or model.input_shape."),
) -> None:
    """Print one value (as JSON, so lists and strings are unambiguous)."""
    config = Project.open(project).load_config()
    typer.echo(json.dumps(cfg.get_value(config, key)))


@app.command("set")
@guarded
def set_(
    project: str = _NAME,
    key: str = typer.Argument(
        ..., help="Dotted key, e.g. train.iterations (sections are case-insensitive)."
    ),
    value: str = typer.Argument(
        ..., help="New value in TOML syntax: 1000, 0.5, true, [132, 268, 268], mtlsd."
    ),
) -> None:
    """Change one value; the whole config is validated before project.toml is rewritten.

    Examples:

      lsdctl config set brain1 train.iterations 100000

      lsdctl config set brain1 model.input_shape "[132, 268, 268]"
    """
    proj = Project.open(project)
    config = proj.load_config()
    updated = cfg.with_value(config, key, cfg.parse_value(value))
    proj.save_config(updated)
    typer.echo(f"{key} = {json.dumps(cfg.get_value(updated, key))}")
    if updated.model.output_shape != config.model.output_shape:
        typer.echo(f"model output shape is now {updated.model.output_shape}")


@app.command("validate")
@guarded
def validate(project: str = _NAME) -> None:
    """Check project.toml; exit 2 with the reason if it is invalid."""
    proj = Project.open(project)
    config = proj.load_config()
    typer.echo(
        f"{proj.config_path} is valid: {config.data.dims}D, voxel {config.data.voxel_size} nm, "
        f"{config.train.model_type.value}, input {config.model.input_shape} -> output "
        f"{config.model.output_shape}"
    )


@app.command("edit")
@guarded
def edit(project: str = _NAME) -> None:
    """Open project.toml in $EDITOR; it is saved only if it validates."""
    proj = Project.open(project)
    proj.load_config()  # refuse to start from an already broken file: say so first
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    original = proj.config_path.read_text()
    fd, draft_name = tempfile.mkstemp(prefix=f"{project}-", suffix=".toml")
    draft = Path(draft_name)
    with os.fdopen(fd, "w") as f:
        f.write(original)
    try:
        status = subprocess.call([*shlex.split(editor), str(draft)])
    except FileNotFoundError:
        draft.unlink()
        raise InputError(f"editor {editor!r} not found: set $EDITOR") from None
    text = draft.read_text()
    if status != 0:
        raise InputError(f"editor exited with {status}: nothing saved (your draft: {draft})")
    if text == original:
        draft.unlink()
        typer.echo("no changes")
        return
    try:
        cfg.validate(_parse_toml(text, draft), source="edited config")
    except InputError as exc:
        raise InputError(f"{exc} — nothing saved; your draft is in {draft}") from None
    cfg.write_atomic(proj.config_path, text)
    draft.unlink()
    typer.echo(f"saved {proj.config_path}")


def _parse_toml(text: str, path: Path) -> dict[str, object]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML ({exc})") from None


@app.command("import")
@guarded
def import_(
    file: Path = typer.Argument(..., help="A config_*.py of the older LSD scripts (yacs style)."),
    project: str = typer.Option(
        ..., "--project", "-P", help="Project whose config receives the values."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Map an older `config_*.py` (`_C.TRAIN.BATCH_SIZE = 1` style) onto a project's config.

    The file is parsed, never executed. Every value that maps is listed with its new key;
    every one that does not is listed with the reason.
    """
    from engine.legacy_config import map_legacy_config

    proj = Project.open(project)
    config = proj.load_config()
    result = map_legacy_config(file, config)
    for old, new, value in result.mapped:
        typer.echo(f"  {old} -> {new} = {json.dumps(value)}")
    if result.unmapped:
        typer.echo(f"not mapped ({len(result.unmapped)}):")
        for old, reason in result.unmapped:
            typer.echo(f"  {old}: {reason}")
    if dry_run:
        typer.echo("dry run: nothing written")
        return
    proj.save_config(result.config)
    typer.echo(
        f"updated {proj.config_path}: {len(result.mapped)} values mapped, "
        f"{len(result.unmapped)} not"
    )


@app.command("presets")
@guarded
def presets() -> None:
    """List the dataset presets with their voxel size and model shapes."""
    for name in cfg.preset_names():
        c = cfg.from_preset(name)
        typer.echo(
            f"{name:<11} {c.data.dims}D voxel {c.data.voxel_size} nm, input {c.model.input_shape} "
            f"-> output {c.model.output_shape}, LSD sigma {c.model.lsd_sigma:g} nm"
        )
