"""`lsdctl evaluate`: score segmentations against the labels (VOI split/merge, adapted Rand).

By default on the newest succeeded segment run (engine.project.lineage). The run goes to the
daemon, or with `--local` runs in the foreground (cli/_submit.py); either way the command
waits for it and prints its scores: a table, or with `--json` the headline, the oracle
row and every threshold's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import InputError
from engine.project import lineage
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import resolve_project
from lsdctl.cli._step_options import (
    EXECUTOR,
    LOCAL,
    PROJECT,
    ROI,
    WORKERS,
    check_executor,
    pathish,
    roi_input,
)
from lsdctl.cli._submit import start_run


@guarded
def evaluate(
    project: str | None = PROJECT,
    from_run: str | None = typer.Option(
        None, "--from", help="The segment run to score (default: the newest succeeded one)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the headline scores (chosen_on: validation or test), the oracle row "
        "and every threshold's as JSON on stdout.",
    ),
    roi: str | None = ROI,
    workers: int | None = WORKERS,
    executor: str | None = EXECUTOR,
    local: bool = LOCAL,
) -> None:
    """Score segmentations against the labels: VOI split/merge and adapted Rand error.

    Writes RUN_DIR/metrics.json and RUN_DIR/scores.png. The headline score is at the
    threshold chosen on the validation volumes during training (it travels with the
    checkpoint); without validation, at the threshold with the lowest VOI on these labels
    themselves, and the output says so. Scores are over all volumes, weighted by their
    scored (labelled) voxels; the oracle row (best on these labels) is for comparison.
    Only labelled voxels inside labels_mask and the prediction's mask count. Counting is
    blockwise (one segmentation block at a time), so memory does not grow with the volume.

    Examples:

      lsdctl evaluate                     # inside projects/brain1/: the project is implied

      lsdctl evaluate --project brain1

      lsdctl evaluate --project brain1 --from segment-20261127-101500-9c0d --json

      lsdctl evaluate --project brain1 --roi 400:2000,0:40000,0:40000 --workers 4
    """
    check_executor(executor)
    proj = resolve_project(project)
    inputs: dict[str, Any] = {}
    if from_run is not None:
        inputs["segment_run"] = pathish(from_run) if "/" in from_run else from_run
    inputs.update(roi_input(roi))
    overrides: dict[str, Any] = {"predict.executor": executor} if executor else {}
    run_dir = start_run(proj, "evaluate", inputs, overrides, workers, 0, local, False, quiet=True)
    if run_dir is None:
        return
    metrics_path = run_dir / lineage.METRICS_FILE
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {metrics_path}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(best_scores(metrics, run_dir), indent=2))
    else:
        _print_metrics(metrics, run_dir)


def best_scores(metrics: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`evaluate --json`: the headline scores (threshold chosen on validation, or on the
    test labels where there was no validation: `chosen_on`), the oracle row (best on the
    test labels) and every threshold's scores."""
    row, chosen_on, oracle = lineage.headline(metrics)
    return {
        "run": run_dir.name,
        "chosen_on": chosen_on,
        "threshold": row["threshold"],
        "voi_split": row["voi_split"],
        "voi_merge": row["voi_merge"],
        "voi": row["voi"],
        "arand": row["arand"],
        "validation": metrics.get("validation"),
        "oracle": oracle,
        "per_threshold": metrics["per_threshold"],
        "metrics": str(run_dir / lineage.METRICS_FILE),
    }


def _print_metrics(metrics: dict[str, Any], run_dir: Path) -> None:
    volumes: dict[str, Any] = metrics.get("volumes") or {}
    row, chosen_on, oracle = lineage.headline(metrics)
    validated = chosen_on == "validation"
    title = "all volumes, voxel-weighted" if len(volumes) > 1 else next(iter(volumes), "")
    table = Table(title=f"run {run_dir.name}: {title}", box=None, pad_edge=False)
    for name in ("THRESHOLD", "VOI SPLIT", "VOI MERGE", "VOI", "ARAND", ""):
        table.add_column(name, justify="right" if name else "left")
    for scores in metrics["per_threshold"]:
        chosen = scores["threshold"] == row["threshold"]
        marks = []
        if chosen:
            marks.append("chosen on validation" if validated else "best on test (no validation)")
        if validated and scores["threshold"] == oracle["threshold"]:
            marks.append("oracle: best on test")
        table.add_row(
            f"{scores['threshold']:.2f}",
            f"{scores['voi_split']:.4f}",
            f"{scores['voi_merge']:.4f}",
            f"{scores['voi']:.4f}",
            f"{scores['arand']:.4f}",
            ", ".join(marks),
            style="bold" if chosen else None,
        )
    console = Console(width=None if Console().is_terminal else 200)
    console.print(table)
    if len(volumes) > 1:
        for name, volume in volumes.items():
            b = volume.get("oracle") or volume["best"]
            console.print(
                f"{name}: best on its labels {b['threshold']:.2f} (voi_split "
                f"{b['voi_split']:.4f}, voi_merge {b['voi_merge']:.4f}, arand {b['arand']:.4f})",
                highlight=False,
            )
    scores_text = (
        f"voi_split {row['voi_split']:.4f}, voi_merge {row['voi_merge']:.4f}, "
        f"VOI {row['voi']:.4f}, arand {row['arand']:.4f}"
    )
    if validated:
        source = metrics.get("validation") or {}
        where = ""
        if source.get("train_run"):
            where = f" (train run {source['train_run']}, iteration {source.get('iteration')})"
        console.print(
            f"threshold {row['threshold']:.2f}, chosen on validation{where}: {scores_text}",
            highlight=False,
        )
        console.print(
            f"oracle, threshold {oracle['threshold']:.2f} chosen on these labels themselves "
            f"(for comparison only, not a score to report): VOI {oracle['voi']:.4f}, "
            f"arand {oracle['arand']:.4f}",
            highlight=False,
        )
    else:
        console.print(
            f"threshold {row['threshold']:.2f}, chosen on the test labels themselves (no "
            f"validation, so the score is optimistic): {scores_text}",
            highlight=False,
        )
        console.print(
            "for an honest score: add val/ volumes (`lsdctl data import --split val`) and "
            "train with train.validate_every set",
            highlight=False,
        )
    plot = run_dir / lineage.PLOT_FILE
    console.print(
        f"metrics: {run_dir / lineage.METRICS_FILE}" + (f"; plot: {plot}" if plot.exists() else ""),
        highlight=False,
        soft_wrap=True,
    )
