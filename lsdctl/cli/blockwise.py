"""`lsdctl predict`, `lsdctl segment`, `lsdctl evaluate`: the steps after training.

Each builds on the newest output of the step before unless told otherwise (engine.lineage):
predict on the newest train run's latest checkpoint, segment on the newest succeeded
predict run, evaluate on the newest succeeded segment run. The run's inputs are resolved
here first (engine.resolve.prepare, the same code the daemon asks), so a bad choice fails
at once, before a daemon starts, and the command can say what it is about to use.

By default the run goes to the daemon, which queues and launches it; the command follows
it (Ctrl-C detaches). `--local` writes the run directory itself and runs
`python -m engine.<kind> RUN_DIR` as a child in the foreground.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from daemon.schemas import RunCreate
from engine import lineage, region, resolve
from engine.contract import new_run_id
from engine.errors import InputError
from engine.project import Project
from lsdctl.cli._follow import follow
from lsdctl.cli._foreground import (
    echo_run_json,
    local_outcome,
    report_run,
    run_foreground,
    summary,
)
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import project_option, resolve_project
from lsdctl.client import ensure_daemon

_EXECUTORS = ("local", "slurm", "lsf")
# Segmentations are stored as segmentation_<threshold %.2f>: at most this many distinct.
_MAX_THRESHOLDS = 99
_PROJECT = project_option()
_LOCAL = typer.Option(False, "--local", help="Run in the foreground, without the daemon.")
_DETACH = typer.Option(
    False, "--detach", "-d", help="Queue the run and print its id; do not follow it."
)
_JSON = typer.Option(
    False,
    "--json",
    help='Print {"run", "kind", "state"} as JSON (with -d: at once; else with run_dir and '
    "result once the run ends).",
)
_WORKERS = typer.Option(
    None, "--workers", min=1, help="Worker processes (default: the project's predict.num_workers)."
)
_ROI_HELP = (
    "Only this region: z0:z1,y0:y1,x0:x1 in nm (world coordinates, as the volume's offset), "
    "or the same in voxels from the volume's first voxel with a 'vx' suffix, e.g. "
    "0:40,0:512,0:512vx (STOP excluded; default: everything)."
)


# ---- commands ----------------------------------------------------------------------------
@guarded
def predict(
    project: str | None = _PROJECT,
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="RUN_ID (its latest checkpoint), RUN_ID:ITERATION, RUN_ID:best (its best on "
        "validation) or a .pt file (default: the newest train run's best checkpoint on "
        "validation, else its latest).",
    ),
    workers: int | None = _WORKERS,
    executor: str | None = typer.Option(
        None, "--executor", help="Where workers run: local, slurm or lsf (predict.executor)."
    ),
    volumes: list[str] = typer.Option(
        [],
        "--volumes",
        help="A volume to predict: a path, or a name in the project's test/, val/ or train/ "
        "(repeatable; default: every test volume).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Predict again where a prediction exists already."
    ),
    roi: str | None = typer.Option(None, "--roi", help=_ROI_HELP),
    mask: str | None = typer.Option(
        None,
        "--mask",
        help="Mask array of each volume, e.g. labels_mask (uint8, non-zero = keep): blocks "
        "without a masked voxel are skipped and stay 0; segment and evaluate then stay "
        "inside it too (predict.mask).",
    ),
    gpus: int | None = typer.Option(
        None,
        "--gpus",
        min=0,
        help="GPUs the daemon reserves (default: one per local worker, up to the machine's "
        "count). --local uses the GPUs CUDA_VISIBLE_DEVICES shows.",
    ),
    local: bool = _LOCAL,
    detach: bool = _DETACH,
    as_json: bool = _JSON,
) -> None:
    """Predict affinities and LSDs blockwise with a trained model.

    Writes RUN_DIR/predictions/VOLUME.zarr (pred_affs, pred_lsds) for each volume.

    Examples:

      lsdctl predict --workers 8          # inside projects/brain1/: the project is implied

      lsdctl predict --project brain1

      lsdctl predict --project brain1 --checkpoint train-20261126-114502-3f9a:50000 --workers 4

      lsdctl predict --project brain1 --volumes sample_C --executor slurm -d --json

      lsdctl predict --project brain1 --roi 0:4000,0:40000,0:40000 --mask labels_mask
    """
    if executor is not None and executor not in _EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(_EXECUTORS)}, got {executor!r}")
    proj = resolve_project(project)
    inputs: dict[str, Any] = {"overwrite": overwrite}
    if checkpoint is not None:
        inputs["checkpoint"] = _pathish(checkpoint) if _looks_like_path(checkpoint) else checkpoint
    if volumes:
        inputs["volumes"] = [_pathish(v) for v in volumes]
    inputs.update(_roi_input(roi))
    if mask is not None:
        inputs["mask"] = mask
    overrides: dict[str, Any] = {"predict.executor": executor} if executor else {}
    start_run(proj, "predict", inputs, overrides, workers, gpus, local, detach, as_json=as_json)


@guarded
def segment(
    project: str | None = _PROJECT,
    from_run: str | None = typer.Option(
        None, "--from", help="The predict run to segment (default: the newest succeeded one)."
    ),
    thresholds: str | None = typer.Option(
        None,
        "--thresholds",
        help="Agglomeration thresholds: START:STOP:STEP (inclusive) or a list, e.g. "
        "0.1:0.9:0.1 or 0.3,0.5,0.7 (segment.thresholds).",
    ),
    merge_function: str | None = typer.Option(
        None,
        "--merge-function",
        help="waterz merge function, e.g. hist_quant_75 or mean (segment.merge_function).",
    ),
    workers: int | None = _WORKERS,
    roi: str | None = typer.Option(None, "--roi", help=_ROI_HELP),
    local: bool = _LOCAL,
    detach: bool = _DETACH,
    as_json: bool = _JSON,
) -> None:
    """Segment predictions: fragments, then agglomeration at each threshold.

    Writes RUN_DIR/segmentation/VOLUME.zarr with fragments and segmentation_<threshold>.

    Examples:

      lsdctl segment                      # inside projects/brain1/: the project is implied

      lsdctl segment --project brain1

      lsdctl segment --project brain1 --from predict-20261127-090000-1a2b --thresholds 0.1:0.9:0.1

      lsdctl segment --project brain1 --thresholds 0.3,0.5 --merge-function mean --local

      lsdctl segment --project brain1 --roi 0:32,0:256,0:256vx
    """
    overrides: dict[str, Any] = {}
    if thresholds is not None:
        overrides["segment.thresholds"] = parse_thresholds(thresholds)
    if merge_function is not None:
        overrides["segment.merge_function"] = merge_function
    proj = resolve_project(project)
    inputs: dict[str, Any] = {}
    if from_run is not None:
        inputs["predict_run"] = _pathish(from_run) if "/" in from_run else from_run
    inputs.update(_roi_input(roi))
    start_run(proj, "segment", inputs, overrides, workers, 0, local, detach, as_json=as_json)


@guarded
def evaluate(
    project: str | None = _PROJECT,
    from_run: str | None = typer.Option(
        None, "--from", help="The segment run to score (default: the newest succeeded one)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the headline scores (chosen_on: validation or test), the oracle row "
        "and every threshold's as JSON on stdout.",
    ),
    roi: str | None = typer.Option(None, "--roi", help=_ROI_HELP),
    workers: int | None = _WORKERS,
    executor: str | None = typer.Option(
        None, "--executor", help="Where workers run: local, slurm or lsf (predict.executor)."
    ),
    local: bool = _LOCAL,
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
    if executor is not None and executor not in _EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(_EXECUTORS)}, got {executor!r}")
    proj = resolve_project(project)
    inputs: dict[str, Any] = {}
    if from_run is not None:
        inputs["segment_run"] = _pathish(from_run) if "/" in from_run else from_run
    inputs.update(_roi_input(roi))
    overrides: dict[str, Any] = {"predict.executor": executor} if executor else {}
    run_dir = start_run(
        proj, "evaluate", inputs, overrides, workers or 1, 0, local, False, quiet=True
    )
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


# ---- parsing -----------------------------------------------------------------------------
def parse_thresholds(text: str) -> list[float]:
    """`0.1:0.9:0.1` (START:STOP:STEP, STOP included) or `0.3,0.5,0.7` → sorted thresholds.

    InputError when the text is malformed, a value is outside (0, 1), or two values would
    name the same segmentation (they are stored to two decimals).
    """
    bad = InputError(
        "--thresholds takes START:STOP:STEP (e.g. 0.1:0.9:0.1) or values separated by "
        f"commas (e.g. 0.3,0.5,0.7); got {text!r}"
    )
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
                raise bad
            start, stop, step = parts
            if step <= 0:
                raise InputError(f"--thresholds step must be positive, got {step:g}")
            if stop < start:
                raise InputError(f"--thresholds stop {stop:g} is below start {start:g}")
            # The epsilon keeps STOP in when (stop - start) / step is 7.999999999.
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > _MAX_THRESHOLDS:
                raise InputError(
                    f"--thresholds {text} gives {count} values: at most {_MAX_THRESHOLDS} "
                    "(segmentations are named by threshold to two decimals)"
                )
            # Rounding turns 0.1 + 2 * 0.1 = 0.30000000000000004 back into 0.3.
            values = [round(start + i * step, 9) for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise bad from None
    if not values:
        raise bad
    for value in values:
        if not 0 < value < 1:
            raise InputError(f"--thresholds must lie strictly between 0 and 1, got {value:g}")
    names: dict[str, float] = {}
    for value in sorted(set(values)):
        other = names.setdefault(f"{value:.2f}", value)
        if other != value:
            raise InputError(
                f"--thresholds {other:g} and {value:g} would both be segmentation_{value:.2f}: "
                "use steps of at least 0.01"
            )
    return sorted(set(values))


def _roi_input(roi: str | None) -> dict[str, Any]:
    """{"roi": TEXT} once its syntax is right (the resolver places it in each volume)."""
    if roi is None:
        return {}
    region.parse(roi)
    return {"roi": roi}


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".pt") or "/" in spec


def _pathish(given: str) -> str:
    """A path that exists from here, made absolute (the daemon has another working
    directory); anything else as given, for the resolver to look up in the project."""
    path = Path(given).expanduser()
    return str(path.absolute()) if path.exists() else given


# ---- running -------------------------------------------------------------------------------
_LABELS = {"predict": "predicting", "segment": "segmenting", "evaluate": "evaluating"}
_STOPPING = {
    "predict": "stopping: finishing the blocks in flight (Ctrl-C again to kill it)",
    "segment": "stopping: finishing the blocks in flight (Ctrl-C again to kill it)",
    "evaluate": "stopping (Ctrl-C again to kill it)",
}


def start_run(
    proj: Project,
    kind: str,
    inputs: dict[str, Any],
    overrides: dict[str, Any],
    workers: int | None,
    gpus: int | None,
    local: bool,
    detach: bool,
    quiet: bool = False,
    as_json: bool = False,
) -> Path | None:
    """Resolve, then run in the daemon or the foreground; the run folder if it succeeded.

    None when detached. `quiet` leaves the success summary to the caller; `as_json`
    prints the run (and, once it ended, its result) as JSON instead.
    """
    request: dict[str, Any] = {
        "project": str(proj.path.absolute()),
        "kind": kind,
        "overrides": overrides,
        "inputs": inputs,
        "workers": workers,
    }
    if local:
        run_id = new_run_id(kind)
        run_dir = proj.runs_dir / run_id
        answer = resolve.prepare({**request, "run_id": run_id, "run_dir": str(run_dir)})
        _tell(kind, answer)
        code = run_foreground(
            run_dir, f"engine.{kind}", _LABELS[kind], stopping_note=_STOPPING[kind]
        )
        result = local_outcome(run_dir, code, kind, f"python -m engine.{kind} {run_dir.absolute()}")
        if as_json:
            echo_run_json(run_id, kind, "succeeded", run_dir.absolute(), result)
        elif not quiet:
            for line in summary(kind, run_id, result):
                typer.echo(line)
        return run_dir
    # Resolved here as well as in the daemon: refusals come before a daemon starts, and
    # the daemon gets absolute paths, so it runs exactly what was shown.
    answer = resolve.prepare(request)
    _tell(kind, answer)
    with ensure_daemon() as client:
        if gpus is None:
            gpus = _default_gpus(client, kind, answer)
        run = client.submit(
            RunCreate(
                kind=kind,  # type: ignore[arg-type]
                project=str(proj.path.absolute()),
                overrides=overrides,
                inputs=answer["inputs"],
                workers=int(answer["resources"]["workers"]),
                gpus=gpus,
            )
        )
        if detach:
            if as_json:
                echo_run_json(run.id, run.kind, run.state.value)
            else:
                typer.echo(run.id)
            return None
        detail = follow(client, run, _LABELS[kind])
    if detail is None:
        return None
    if as_json:
        # Printed whatever the end: the exit code (from report_run) says how it went.
        echo_run_json(detail.id, detail.kind, detail.state.value, detail.run_dir, detail.result)
    report_run(detail, quiet=quiet or as_json)
    return Path(detail.run_dir)


def _default_gpus(client: Any, kind: str, answer: dict[str, Any]) -> int:
    """One GPU per local predict worker, as many as the machine has; none elsewhere (the
    CPU steps, and cluster workers, which get theirs from the cluster)."""
    if kind != "predict" or answer["resources"]["executor"] != "local":
        return 0
    report = client.gpus()
    return min(int(answer["resources"]["workers"]), len(report.gpus)) if report.available else 0


def _tell(kind: str, answer: dict[str, Any]) -> None:
    """What the run will use, on stderr (stdout stays for results and --json)."""
    inputs = answer["inputs"]
    config = answer["config"]
    lines = [f"note: {note}" for note in answer.get("notes") or []]
    if kind == "predict":
        where = f" (train run {inputs['train_run']})" if inputs.get("train_run") else ""
        lines.append(f"checkpoint: {inputs['checkpoint']}{where}")
        lines.append("volumes: " + ", ".join(Path(v).name for v in inputs["volumes"]))
    elif kind == "segment":
        thresholds = ", ".join(f"{t:.2f}" for t in config["segment"]["thresholds"])
        lines.append(
            f"predictions: run {Path(inputs['predict_run']).name} "
            f"({', '.join(Path(v).name for v in inputs['volumes'])})"
        )
        lines.append(
            f"thresholds: {thresholds}; merge function {config['segment']['merge_function']}"
        )
    elif kind == "evaluate":
        lines.append(f"segmentations: run {Path(inputs['segment_run']).name}")
    for line in lines:
        typer.echo(line, err=True)


# ---- evaluate's output ---------------------------------------------------------------------
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
