"""Starting a run of predict, segment or evaluate: in the daemon, or in the foreground.

The run's inputs are resolved here first (engine.runs.resolve.prepare, the same code the
daemon asks), so a bad choice fails at once, before a daemon starts, and the command can
say what it is about to use (on stderr). By default the run then goes to the daemon,
which queues and launches it, and the command follows it (Ctrl-C detaches). `--local`
writes the run directory itself and runs `python -m engine.<kind> RUN_DIR` as a child in
the foreground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from daemon.schemas import RunCreate
from engine.contract import ResolvedRun
from engine.project.layout import Project
from lsdctl.cli._follow import follow
from lsdctl.cli._foreground import (
    echo_run_json,
    local_outcome,
    report_run,
    run_foreground,
    summary,
)
from lsdctl.cli._resolve import prepare_run
from lsdctl.client import ensure_daemon

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
    if local:
        answer = prepare_run(
            proj, kind, overrides=overrides, inputs=inputs, workers=workers, write=True
        )
        run_id = str(answer.id)
        run_dir = proj.runs_dir / run_id
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
    answer = prepare_run(proj, kind, overrides=overrides, inputs=inputs, workers=workers)
    _tell(kind, answer)
    with ensure_daemon() as client:
        if gpus is None:
            gpus = _default_gpus(client, kind, answer)
        run = client.submit(
            RunCreate(
                kind=kind,  # type: ignore[arg-type]
                project=str(proj.path.absolute()),
                overrides=overrides,
                inputs=answer.inputs,
                workers=answer.resources.workers,
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


def _default_gpus(client: Any, kind: str, answer: ResolvedRun) -> int:
    """One GPU per local predict worker, as many as the machine has; none elsewhere (the
    CPU steps, and cluster workers, which get theirs from the cluster)."""
    if kind != "predict" or answer.resources.executor != "local":
        return 0
    report = client.gpus()
    return min(answer.resources.workers, len(report.gpus)) if report.available else 0


def _tell(kind: str, answer: ResolvedRun) -> None:
    """What the run will use, on stderr (stdout stays for results and --json)."""
    inputs = answer.inputs
    config = answer.config
    lines = [f"note: {note}" for note in answer.notes]
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
