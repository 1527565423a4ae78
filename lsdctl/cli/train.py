"""`lsdctl train`: train a model on a project's training volumes.

By default the run goes to the daemon (started if needed), which queues it, gives it a
GPU if there is one, and records it; this command follows it until it ends (Ctrl-C
detaches; the run goes on). `-d` returns at once with the run id.

`--local` resolves and writes the run directory as the daemon does (engine.resolve.prepare,
the one resolver), then runs `python -m engine.train RUN_DIR` as a child process in its own
session (so torch never loads in this process, and a terminal Ctrl-C reaches only lsdctl,
which then asks the run to checkpoint and stop), and follows its events with a progress bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from daemon.schemas import RunCreate, RunInfo
from engine.contract import EVENTS_FILE, LOG_FILE, RUN_FILE, read_events
from engine.errors import InputError
from engine.models.registry import names_of
from engine.project.layout import Project
from lsdctl.cli import _foreground
from lsdctl.cli._follow import follow
from lsdctl.cli._foreground import echo_run_json
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import project_option, resolve_project
from lsdctl.cli._resolve import prepare_run
from lsdctl.client import ensure_daemon

_EXIT_INTERRUPTED = _foreground.EXIT_INTERRUPTED


@guarded
def train(
    project: str | None = project_option("Project to train (its train/ volumes)"),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "--preset",
        help="Dataset preset to train with (cremi, cremi-paper, snemi, zebrafinch, fib25, tiny, "
        "tiny2d or a .toml file): its geometry and settings, your changes kept.",
    ),
    model: str | None = typer.Option(None, "--model", help=f"{names_of()}."),
    iterations: int | None = typer.Option(
        None, "--iterations", help="Total iterations; a resumed run continues up to this."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue run RUN_ID from its last checkpoint."
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        help="Start from the weights of RUN_ID (its latest checkpoint), RUN_ID:ITERATION, "
        "RUN_ID:best or a .pt file (fine-tuning: fresh optimizer, iterations from 0); the "
        "model settings must match its layers.",
    ),
    local: bool = typer.Option(False, "--local", help="Run in the foreground, without the daemon."),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Queue the run and print its id; do not follow it."
    ),
    gpus: int = typer.Option(
        1,
        "--gpus",
        min=0,
        help="GPUs to train on: more than 1 trains data-parallel, one process per GPU, each "
        "with train.batch_size samples (0: CPU; without GPUs the run uses the CPU).",
    ),
    require_gpu: bool = typer.Option(
        False, "--require-gpu", help="Wait for a GPU rather than fall back to the CPU."
    ),
    share_gpu: bool = typer.Option(
        False, "--share-gpu", help="Allow other sharing runs on the same GPU."
    ),
    after: list[str] = typer.Option(
        [], "--after", help="Start only after this run succeeded (repeatable)."
    ),
    priority: int = typer.Option(0, "--priority", help="Higher starts first; FIFO within."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print {"run", "kind", "state"} as JSON (with -d: at once; else with run_dir and '
        "result once the run ends).",
    ),
) -> None:
    """Train an LSD model; shows progress, loss and ETA.

    Through the daemon (default), Ctrl-C detaches and the run goes on; `lsdctl resume
    RUN_ID` continues a stopped run. With --local, Ctrl-C stops the run after saving a
    checkpoint and `--resume RUN_ID --local` continues it.

    Examples:

      lsdctl train --dataset cremi        # inside projects/brain1/: the project is implied

      lsdctl train --project brain1 --dataset cremi

      lsdctl train --project brain1 --model ACRLSD --iterations 20000 -d --json

      lsdctl train --project brain1 --local

      lsdctl train --project brain2 --init-from ~/old/checkpoint_00300000.pt

      lsdctl train --project brain1 --init-from RUN_ID:best --iterations 20000   # fine-tune
    """
    if iterations is not None and iterations < 1:
        raise InputError(f"--iterations must be positive, got {iterations}")
    if resume is not None and (dataset or model or init_from):
        raise InputError(
            "--resume continues a run as it was: drop --dataset, --model and --init-from"
        )
    if init_from is not None and not init_from.strip():
        raise InputError("--init-from needs RUN_ID, RUN_ID:ITERATION, RUN_ID:best or a .pt file")
    inputs_asked: dict[str, object] = {}
    if init_from is not None:
        # A file found from here is made absolute: the daemon resolves from elsewhere
        # (a relative path it then tries against the project).
        given = Path(init_from).expanduser()
        inputs_asked["init_from"] = str(given.absolute()) if given.is_file() else init_from
    if not local:
        _train_in_daemon(
            # Resuming names its run, which knows its project: nothing to resolve.
            resolve_project(project) if resume is None else None,
            dataset,
            model,
            iterations,
            resume,
            detach,
            as_json,
            RunCreate(
                kind="train",
                project=".",
                inputs=inputs_asked,
                gpus=gpus,
                require_gpu=require_gpu,
                share_gpu=share_gpu,
                after=after,
                priority=priority,
            ),
        )
        return
    proj = resolve_project(project)
    if resume is not None:
        run_dir = proj.runs_dir / resume
        if not (run_dir / RUN_FILE).is_file():
            raise InputError(f"no run {resume!r} in {proj.runs_dir}: see the folder names there")
    else:
        # Resolved and written as the daemon does it (its checks come before a run
        # directory exists: volumes, validation split, --init-from).
        resolved = prepare_run(
            proj,
            "train",
            preset=dataset,
            overrides=_overrides(model, iterations),
            inputs=inputs_asked,
            # Without the daemon nothing is reserved: GPUs 0..N-1 of those visible.
            gpus=range(gpus) if gpus > 1 else (),
            write=True,
        )
        run_dir = proj.runs_dir / str(resolved.id)
    code = run_foreground(run_dir, iterations)
    _report(proj, run_dir, code, as_json)


def _overrides(model: str | None, iterations: int | None) -> dict[str, Any]:
    """--model and --iterations as config overrides (the same for the daemon and --local)."""
    overrides: dict[str, Any] = {}
    if model:
        overrides["train.model_type"] = model.upper()
    if iterations:
        overrides["train.iterations"] = iterations
    return overrides


def run_foreground(run_dir: Path, iterations: int | None) -> int:
    """Run engine.train.trainer on `run_dir`, following its events; returns its exit code."""
    args = ["--iterations", str(iterations)] if iterations is not None else []
    return _foreground.run_foreground(
        run_dir,
        "engine.train",
        "training",
        args,
        show_loss=True,
        stopping_note="stopping: the run saves a checkpoint first (Ctrl-C again to kill it)",
    )


def _report(proj: Project, run_dir: Path, code: int, as_json: bool = False) -> None:
    events, _ = read_events(run_dir / EVENTS_FILE)
    errors = [e["message"] for e in events if e["type"] == "error"]
    checkpoints = [e for e in events if e["type"] == "checkpoint"]
    resume = f"lsdctl train --project {proj.name} --resume {run_dir.name} --local"
    if code == 0:
        result: dict[str, Any] = next((e for e in reversed(events) if e["type"] == "result"), {})
        if as_json:
            echo_run_json(run_dir.name, "train", "succeeded", run_dir.absolute(), result)
            return
        typer.echo(
            f"done: run {run_dir.name}, {result.get('iterations')} iterations, "
            f"last loss {result.get('final_loss', float('nan')):.4f}"
        )
        typer.echo(f"checkpoint: {result.get('checkpoint')}")
        return
    if code == _EXIT_INTERRUPTED:
        where = f" at iteration {checkpoints[-1]['iteration']}" if checkpoints else ""
        typer.echo(f"interrupted{where}; checkpoint saved. Continue with: {resume}", err=True)
        raise typer.Exit(_EXIT_INTERRUPTED)
    message = errors[-1] if errors else f"exit code {code}"
    if code == 2:
        raise InputError(message)
    typer.echo(
        f"error: training failed: {message} (see {run_dir / LOG_FILE}); continue with: {resume}",
        err=True,
    )
    raise typer.Exit(1)


def _train_in_daemon(
    proj: Project | None,
    dataset: str | None,
    model: str | None,
    iterations: int | None,
    resume: str | None,
    detach: bool,
    as_json: bool,
    request: RunCreate,
) -> None:
    client = ensure_daemon()
    with client:
        if proj is None:
            assert resume is not None  # train() resolves the project unless resuming
            run: RunInfo = client.resume(resume, iterations)
        else:
            # The daemon resolves and validates the config: a bad value is its 4xx answer.
            run = client.submit(
                request.model_copy(
                    update={
                        "project": str(proj.path.absolute()),
                        "preset": dataset,
                        "overrides": _overrides(model, iterations),
                    }
                )
            )
        if detach:
            if as_json:
                echo_run_json(run.id, run.kind, run.state.value)
            else:
                typer.echo(run.id)
            return
        detail = follow(client, run, "training")
    if detail is None:
        return
    if as_json:
        # Printed whatever the end: the exit code (from report_run) says how it went.
        echo_run_json(detail.id, detail.kind, detail.state.value, detail.run_dir, detail.result)
    _foreground.report_run(detail, quiet=as_json)
