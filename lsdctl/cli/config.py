"""`lsdctl config show|get|set|validate|edit|import|presets`: a project's configuration.

The project comes from `--project/-P` or is implied (lsdctl.cli._project). Until the next
release the older form with the project as the first argument (`lsdctl config set
brain1 KEY VALUE`) still works and says it is deprecated: it is told apart by its one
extra argument, which only that form has.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from engine.errors import InputError
from engine.project import config as cfg
from engine.project.layout import Project
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import project_option, resolve_project, root_in_effect

app = typer.Typer(
    help="Show, change and check a project's configuration (project.toml).",
    no_args_is_help=True,
)


class _Command(TyperCommand):
    """A command whose usage line leaves out hidden arguments (the deprecated PROJECT)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


_PROJECT = project_option()
# One more positional than the new form has: filled only by the deprecated form, whose
# first argument is the project. Hidden from help and docs, still parsed.
_OLD_PROJECT = typer.Argument(None, hidden=True, metavar="PROJECT")
_KEY_HELP = "Dotted key, e.g. train.iterations (sections are case-insensitive)."


def _project(
    command: str, project: str | None, args: list[str | None], new_usage: str
) -> tuple[Project, list[str]]:
    """The project and the command's own arguments, from either form.

    `args` are the positionals as parsed, the deprecated PROJECT slot last: when it is
    filled, the first argument was the project (the old form). The warning comes after
    the project is found, so a mistyped name is still one line.
    """
    given = [a for a in args if a is not None]
    if args[-1] is None:
        return resolve_project(project), given
    old, rest = given[0], given[1:]
    if project is not None:
        raise InputError(
            f"`lsdctl config {command}` got the project twice ({old!r} and --project "
            f"{project}): use `lsdctl config {command} {new_usage} --project {project}`"
        )
    proj = Project.open(old, root_in_effect())
    old_form = " ".join(["lsdctl config", command, "PROJECT", new_usage]).rstrip()
    new_form = " ".join(w for w in ["lsdctl config", command, new_usage, "--project PROJECT"] if w)
    typer.echo(f"warning: `{old_form}` is deprecated: use `{new_form}`", err=True)
    return proj, rest


@app.command("show", cls=_Command)
@guarded
def show(
    old_project: str | None = _OLD_PROJECT,
    project: str | None = _PROJECT,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON instead of documented TOML."),
) -> None:
    """Print the whole validated configuration, each key with its documentation.

    Examples:

      lsdctl config show                  # inside projects/brain1/: the project is implied

      lsdctl config show --project brain1 --json
    """
    proj, _ = _project("show", project, [old_project], "")
    config = proj.load_config()
    if as_json:
        typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        typer.echo(cfg.dump(config), nl=False)


@app.command("get", cls=_Command)
@guarded
def get(
    key: str = typer.Argument(
        ..., metavar="KEY", help="Dotted key, e.g. train.iterations or model.input_shape."
    ),
    old_form_last: str | None = _OLD_PROJECT,
    project: str | None = _PROJECT,
    as_json: bool = typer.Option(
        False, "--json", help='Print {"project", "key", "value"} instead of the bare value.'
    ),
) -> None:
    """Print one value (as JSON, so lists and strings are unambiguous).

    Examples:

      lsdctl config get train.iterations --project brain1

      lsdctl config get model.output_shape
    """
    proj, (key,) = _project("get", project, [key, old_form_last], "KEY")
    value = cfg.get_value(proj.load_config(), key)
    if as_json:
        typer.echo(json.dumps({"project": proj.name, "key": key, "value": value}, indent=2))
    else:
        typer.echo(json.dumps(value))


@app.command("set", cls=_Command)
@guarded
def set_(
    key: str = typer.Argument(..., metavar="KEY", help=_KEY_HELP),
    value: str = typer.Argument(
        ...,
        metavar="VALUE",
        help="New value in TOML syntax: 1000, 0.5, true, [132, 268, 268], mtlsd.",
    ),
    old_form_last: str | None = _OLD_PROJECT,
    project: str | None = _PROJECT,
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print {"project", "key", "value", "output_shape"} (the model\'s, after the '
        "change) as JSON.",
    ),
) -> None:
    """Change one value; the whole config is validated before project.toml is rewritten.

    Examples:

      lsdctl config set train.iterations 100000 --project brain1

      lsdctl config set model.input_shape "[132, 268, 268]"   # inside projects/brain1/
    """
    proj, (key, value) = _project("set", project, [key, value, old_form_last], "KEY VALUE")
    config = proj.load_config()
    updated = cfg.with_value(config, key, cfg.parse_value(value))
    proj.save_config(updated)
    new_value = cfg.get_value(updated, key)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "project": proj.name,
                    "key": key,
                    "value": new_value,
                    "output_shape": updated.model.output_shape,
                },
                indent=2,
            )
        )
        return
    typer.echo(f"{key} = {json.dumps(new_value)}")
    if updated.model.output_shape != config.model.output_shape:
        typer.echo(f"model output shape is now {updated.model.output_shape}")


@app.command("validate", cls=_Command)
@guarded
def validate(
    old_project: str | None = _OLD_PROJECT,
    project: str | None = _PROJECT,
    as_json: bool = typer.Option(
        False, "--json", help="Print the path, dimensions, model and shapes as JSON."
    ),
) -> None:
    """Check project.toml; exit 2 with the reason if it is invalid.

    Examples:

      lsdctl config validate --project brain1

      lsdctl config validate --json
    """
    proj, _ = _project("validate", project, [old_project], "")
    config = proj.load_config()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "project": proj.name,
                    "path": str(proj.config_path.absolute()),
                    "valid": True,
                    "dims": config.data.dims,
                    "voxel_size": config.data.voxel_size,
                    "model_type": config.train.model_type.value,
                    "input_shape": config.model.input_shape,
                    "output_shape": config.model.output_shape,
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"{proj.config_path} is valid: {config.data.dims}D, voxel {config.data.voxel_size} nm, "
        f"{config.train.model_type.value}, input {config.model.input_shape} -> output "
        f"{config.model.output_shape}"
    )


@app.command("edit", cls=_Command)
@guarded
def edit(old_project: str | None = _OLD_PROJECT, project: str | None = _PROJECT) -> None:
    """Open project.toml in $VISUAL or $EDITOR (default vi); it is saved only if it validates.

    Example:

      lsdctl config edit --project brain1
    """
    proj, _ = _project("edit", project, [old_project], "")
    proj.load_config()  # refuse to start from an already broken file: say so first
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    original = proj.config_path.read_text()
    fd, draft_name = tempfile.mkstemp(prefix=f"{proj.name}-", suffix=".toml")
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
    project: str | None = project_option("Project whose config receives the values"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Map an older `config_*.py` (`_C.TRAIN.BATCH_SIZE = 1` style) onto a project's config.

    The file is parsed, never executed. Every value that maps is listed with its new key;
    every one that does not is listed with the reason.

    Examples:

      lsdctl config import config_cremi.py --project brain1 --dry-run

      lsdctl config import config_cremi.py --project brain1
    """
    from engine.project.legacy_config import map_legacy_config

    proj = resolve_project(project)
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
def presets(
    as_json: bool = typer.Option(
        False, "--json", help="Print each preset's dimensions, voxel size and shapes as JSON."
    ),
) -> None:
    """List the dataset presets with their voxel size and model shapes.

    A preset is what `--dataset NAME` (alias `--preset`) picks in `lsdctl init` and
    `lsdctl train`.

    Example:

      lsdctl config presets
    """
    if as_json:
        listed = []
        for name in cfg.preset_names():
            c = cfg.from_preset(name)
            listed.append(
                {
                    "name": name,
                    "dims": c.data.dims,
                    "voxel_size": c.data.voxel_size,
                    "input_shape": c.model.input_shape,
                    "output_shape": c.model.output_shape,
                    "lsd_sigma": c.model.lsd_sigma,
                }
            )
        typer.echo(json.dumps(listed, indent=2))
        return
    for name in cfg.preset_names():
        c = cfg.from_preset(name)
        typer.echo(
            f"{name:<11} {c.data.dims}D voxel {c.data.voxel_size} nm, input {c.model.input_shape} "
            f"-> output {c.model.output_shape}, LSD sigma {c.model.lsd_sigma:g} nm"
        )
