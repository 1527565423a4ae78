"""`lsdctl data import|synth|check`: get volumes into a project and see what they hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.project.layout import LABELLED_SPLITS, Project, check_name
from lsdctl.cli._guard import guarded, parse_ints
from lsdctl.cli._project import project_option, resolve_project

if TYPE_CHECKING:  # the importer pulls in h5py and zarr: loaded when a command needs it
    from engine.data.importer import ImportRequest

app = typer.Typer(
    help="Import volumes into a project, make synthetic ones, and check them.",
    no_args_is_help=True,
)

_PROJECT = project_option("Project name (see `lsdctl init`)")
_SPLIT = typer.Option(
    "train",
    "--split",
    help="train (sampled for training), val (chooses the checkpoint and the segmentation "
    "threshold; needs labels) or test (predicted and scored).",
)

# `data synth`'s default seed per split (test's 1 predates val): the splits never share a
# volume unless asked to.
_SYNTH_SEEDS = {"train": 0, "val": 2, "test": 1}


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@app.command("import")
@guarded
def import_(
    source: Path = typer.Argument(
        ..., help="Raw volume: HDF5 (CREMI-style or any key), TIFF image/stack, or zarr/N5."
    ),
    project: str | None = _PROJECT,
    split: str = _SPLIT,
    name: str | None = typer.Option(None, "--name", help="Volume name (default: the file's name)."),
    labels: Path | None = typer.Option(
        None, "--labels", help="File with the neuron ids, if not in SOURCE."
    ),
    raw_key: str | None = typer.Option(
        None, "--raw-key", help="Dataset of the raw data (found automatically if unique or CREMI)."
    ),
    labels_key: str | None = typer.Option(None, "--labels-key", help="Dataset of the neuron ids."),
    mask: Path | None = typer.Option(
        None, "--mask", help="File with a mask of labelled voxels (non-zero = labelled)."
    ),
    mask_key: str | None = typer.Option(
        None,
        "--mask-key",
        help="Dataset of the mask (in --mask's file, else the labels'; volumes/labels/mask "
        "is found in CREMI-style files).",
    ),
    voxel_size: str | None = typer.Option(
        None,
        "--voxel-size",
        help="Voxel size in nm, z,y,x (default: from the file, else the project's).",
    ),
    offset: str | None = typer.Option(
        None, "--offset", help="Offset in nm, z,y,x (default: from the file, else 0)."
    ),
    crop: str | None = typer.Option(
        None,
        "--crop",
        help="Import part of the volume, in voxels: e.g. 0:35,:,: for the first 35 sections.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a volume of the same name."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the imported volume (path, shape, voxel size, …) as JSON."
    ),
) -> None:
    """Copy a volume into PROJECT/SPLIT/NAME.zarr as raw (uint8), labels (uint64), labels_mask.

    Reads block by block with a progress bar; a volume is written completely or not at all.
    The source file, key and region are recorded in the volume, so that `data check` warns
    when a val or test volume overlaps a training one.

    Labels (and mask) may cover less than raw, as in CREMI's padded samples: each keeps
    its own region, placed by its `offset` attribute (nm); it must lie on raw's voxel
    grid and inside raw. Training then samples where the labels are, with raw context
    from the padding around them.

    Examples:

      lsdctl data import sample_A.hdf --project brain1            # CREMI: keys and resolution found

      lsdctl data import sample_A_padded_20160501.hdf --project brain1   # raw larger than labels


      lsdctl data import train-image.h5 --labels train-gt.h5 --project p --voxel-size 10,10,10

      lsdctl data import stack.h5 --project p --crop 0:30,:,: --name stack_train

      lsdctl data import stack.h5 --project p --crop 30:35,:,: --name stack_val --split val
    """
    from engine.data.importer import ImportRequest, parse_crop

    proj = resolve_project(project)
    request = ImportRequest(
        source=source,
        split=split,
        name=name,
        labels=labels,
        raw_key=raw_key,
        labels_key=labels_key,
        mask=mask,
        mask_key=mask_key,
        voxel_size=parse_ints(voxel_size, "--voxel-size"),
        offset=parse_ints(offset, "--offset"),
        crop=parse_crop(crop) if crop else None,
        overwrite=overwrite,
    )
    import_into(proj, request, as_json)


def import_into(proj: Project, request: ImportRequest, as_json: bool = False) -> None:
    """`data import`'s work and report, for a resolved project (`data fetch` shares it)."""
    from engine.data.importer import import_volume

    proj.split_dir(request.split)  # an unknown split fails before any reading
    with _progress() as bar:
        task = bar.add_task(f"importing {request.source.name}", total=None)
        report = import_volume(
            proj,
            request,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "project": proj.name,
                    "volume": f"{report.path.parent.name}/{report.path.name}",
                    "path": str(report.path.absolute()),
                    "shape": list(report.shape),
                    "voxel_size": list(report.voxel_size),
                    "offset": list(report.offset),
                    "labels_shape": _list_or_none(report.labels_shape),
                    "labels_offset": _list_or_none(report.labels_offset),
                    "arrays": report.arrays,
                    "raw_dtype": report.raw_dtype,
                    "raw_scaled_from": report.raw_scaled_from,
                    "notes": report.notes,
                },
                indent=2,
            )
        )
        return
    for note in report.notes:
        typer.echo(f"note: {note}")
    scaled = (
        f", raw {report.raw_dtype} scaled from [{report.raw_scaled_from[0]:g}, "
        f"{report.raw_scaled_from[1]:g}] to uint8"
        if report.raw_scaled_from
        else ""
    )
    typer.echo(
        f"imported {report.path.parent.name}/{report.path.name}: shape {list(report.shape)}, "
        f"voxel size {list(report.voxel_size)} nm, offset {list(report.offset)} nm, "
        f"arrays {', '.join(report.arrays)}{scaled}"
    )
    typer.echo(f"next: lsdctl data check --project {proj.name}")


def _list_or_none(values: tuple[int, ...] | None) -> list[int] | None:
    return None if values is None else list(values)


@app.command("synth")
@guarded
def synth(
    project: str | None = _PROJECT,
    split: str = _SPLIT,
    shape: str | None = typer.Option(
        None, "--shape", help="Shape in voxels, z,y,x (default: fits the model twice per axis)."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed (default: 0 for train, 2 for val, 1 for test)."
    ),
    name: str | None = typer.Option(None, "--name", help="Volume name (default: synth<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a volume of the same name."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the written volume (path, shape, cells, seed) as JSON."
    ),
) -> None:
    """Generate a deterministic EM-like volume with dense labels (for demos and tests).

    Dark membranes between textured cell bodies, blurred and noisy, at the project's
    voxel size; the same seed always gives the same volume.

    Examples:

      lsdctl data synth --project brain1

      lsdctl data synth --project brain1 --split val --shape 48,88,88
    """
    from engine.data import provenance
    from engine.data.synth import synthesize
    from engine.data.volume import write_volume
    from engine.errors import InputError

    proj = resolve_project(project)
    config = proj.load_config()
    proj.split_dir(split)  # an unknown split fails before any work
    seed = seed if seed is not None else _SYNTH_SEEDS[split]
    volume_name = check_name(name or f"synth{seed}", what="volume name")
    target = proj.split_dir(split) / f"{volume_name}.zarr"
    if target.exists() and not overwrite:
        raise InputError(
            f"volume {split}/{volume_name}.zarr already exists in {proj.name}: "
            "pass --name or --overwrite"
        )
    dims = config.data.dims
    size = parse_ints(shape, "--shape") or default_synth_shape(config.model.input_shape)
    if len(size) != dims:
        raise InputError(f"--shape needs {dims} values for this {dims}D project, got {size}")
    raw, labels = synthesize(size, config.data.voxel_size, seed=seed)
    origin = provenance.Synthesized(
        seed=seed,
        shape=list(raw.shape),
        voxel_size=list(config.data.voxel_size),
        roi=provenance.world_roi([0] * dims, raw.shape, config.data.voxel_size),
    )
    write_volume(target, raw, labels, config.data.voxel_size, attrs=provenance.to_attrs(origin))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "project": proj.name,
                    "volume": f"{split}/{volume_name}.zarr",
                    "path": str(target.absolute()),
                    "shape": list(raw.shape),
                    "cells": int(labels.max()),
                    "voxel_size": list(config.data.voxel_size),
                    "seed": seed,
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"wrote {split}/{volume_name}.zarr: shape {list(raw.shape)}, {int(labels.max())} cells, "
        f"voxel size {config.data.voxel_size} nm (seed {seed})"
    )


def default_synth_shape(input_shape: list[int]) -> list[int]:
    floor = 64 if len(input_shape) == 3 else 256
    return [max(floor, 2 * s) for s in input_shape]


@app.command("check")
@guarded
def check(
    project: str | None = _PROJECT,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Report each volume's shape, dtype, voxel size, offset, labels and mask, and every problem.

    Volumes of train/, val/ and test/; a val or test volume that shares voxels with a
    training volume (or a test volume with a val one) is warned about. Exits 1 when a
    training or validation volume is unusable (or there is no training volume), 0 otherwise.

    Examples:

      lsdctl data check                   # inside projects/brain1/: the project is implied

      lsdctl data check --project brain1 --json
    """
    from engine.data.check import check_project

    proj = resolve_project(project)
    reports = check_project(proj)
    # Training reads the val volumes too (to choose the checkpoint): both must be usable.
    ok = any(r.split == "train" for r in reports) and all(
        r.usable for r in reports if r.split in LABELLED_SPLITS
    )
    if as_json:
        typer.echo(
            json.dumps(
                {"project": proj.name, "ok": ok, "volumes": [r.to_dict() for r in reports]},
                indent=2,
            )
        )
    else:
        _print_reports(proj.name, reports)
    if not any(r.split == "train" for r in reports) and not as_json:
        typer.echo(
            f"no training volumes: add one with `lsdctl data import FILE --project {proj.name}` "
            f"or `lsdctl data synth --project {proj.name}`"
        )
    if not ok:
        raise typer.Exit(1)


def _print_reports(project: str, reports: list) -> None:  # type: ignore[type-arg]
    console = Console(width=max(Console().width, 120))
    table = Table(title=f"volumes of {project}")
    for column in (
        "volume",
        "shape",
        "voxel nm",
        "offset nm",
        "labels",
        "labelled",
        "mask",
        "status",
    ):
        table.add_column(column)
    for r in reports:
        raw = r.arrays.get("raw")
        status = "[green]ok[/]" if r.usable else "[red]unusable[/]"
        if r.usable and r.problems:
            status = "[yellow]ok, warnings[/]"
        table.add_row(
            f"{r.split}/{r.name}",
            "×".join(map(str, raw.shape)) if raw else "-",
            ",".join(map(str, raw.voxel_size)) if raw else "-",
            ",".join(map(str, raw.offset)) if raw else "-",
            str(r.label_count) if r.label_count is not None else "-",
            f"{r.labelled_fraction:.0%}" if r.labelled_fraction is not None else "-",
            f"{r.mask_coverage:.0%}" if r.mask_coverage is not None else "-",
            status,
        )
    console.print(table)
    for r in reports:
        for problem in r.problems:
            console.print(
                f"{r.split}/{r.name}: {problem.severity}: {problem.message}",
                highlight=False,
                markup=False,
            )
