"""`python -m engine.runs.resolve --serve`: resolve and write run configs for the daemon.

The one place a run's settings are resolved: the daemon (through this helper), `--local`
runs and the CLI's checks before a submit all call `prepare`. The daemon imports no
engine code; it keeps one of these helpers running and asks it, one JSON object a line on
stdin, answered one JSON object a line on stdout, both pydantic models of
engine.contract:

  RunRequest {"op": "prepare", "kind", "project", "preset", "overrides", "inputs",
              "resources": {"gpus", "workers", "executor"}, "run_id", "run_dir"}
    Loads PROJECT/project.toml, rebases it on `preset` if given, applies the overrides
    (engine.project.config.with_value), validates, fills the inputs (below) and the resources,
    and when run_id and run_dir are given writes RUN_DIR/run.toml (engine.runs.spec.write_spec).
    → ResolvedRun {"ok": true, "kind", "project": {"name", "path"}, "config", "inputs",
       "resources", "notes", "id", "run_dir"}
  WriteRequest {"op": "write", "kind", "project", "run_id", "run_dir", "config",
                "inputs", "resources"}
    Writes run.toml from a config resolved before (validated again). → {"ok": true}

Inputs per kind, defaults from the project's runs on disk (engine.project.lineage); what the
request names is checked, and resolved to absolute paths (so preparing twice is a no-op):
  train     volumes: the project's train/*.zarr; val_volumes: its val/*.zarr when the run
            validates (train.validate_every, a model with affinities), each with labels;
            init_from: RUN_ID, RUN_ID:ITER, RUN_ID:best or a .pt path → its path, checked
            to be a checkpoint whose layers fit the run's model (weights only)
  predict   checkpoint: RUN_ID, RUN_ID:ITER or a .pt path (default: the newest train
            run's latest checkpoint) → its path, plus train_run (the run id; absent for
            a file from outside the project's train runs: TOML has no null; such a file
            is checked to be a checkpoint that fits the config);
            volumes: paths or names of volumes with `raw` (default: test/*.zarr);
            overwrite: bool (default false); roi: engine.data.region text, checked against
            every volume's raw; mask: an array every volume has (predict.mask)
  segment   predict_run: a predict run id or folder (default: the newest succeeded one)
            → its folder; volumes: its prediction zarrs with `pred_affs` (default: all);
            roi: checked against every prediction
  evaluate  segment_run: a segment run id or folder (default: the newest succeeded one)
            → its folder; each of its segmentations must name a source volume with labels;
            roi: checked against every segmentation
Resources are defaulted here and nowhere else: blockwise runs (predict, segment, evaluate)
get workers = predict.num_workers and executor = predict.executor unless the request asks
otherwise (`--workers 1` is one worker); train runs get one worker, locally. GPUs are
those the request names (the daemon's reservation; none before launch).

Errors answer Refused {"ok": false, "status": 404 (no such project) | 422 (invalid) |
500, "message": one line}. The helper exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, get_args

from pydantic import ValidationError

from engine.blockwise.launchers import EXECUTORS, executor_names, one_of
from engine.contract import (
    OPS,
    ProjectRef,
    Refused,
    ResolvedRun,
    Resources,
    ResourcesAsked,
    RunKind,
    RunRequest,
    WriteRequest,
    Written,
)
from engine.data import region
from engine.errors import InputError
from engine.models.registry import segmentable_names
from engine.project import config as cfg
from engine.project import lineage
from engine.project.layout import CONFIG_FILE, Project
from engine.runs.checkpoint_check import check_checkpoint
from engine.runs.spec import RunSpec, write_spec
from engine.train.validation import val_volumes

logger = logging.getLogger(__name__)


class NotFound(InputError):
    """The project named in a request does not exist."""


def _project(path: str) -> Project:
    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise NotFound(
            f"no project at {folder}: {CONFIG_FILE} is missing (`lsdctl init {folder.name}` "
            "creates it)"
        )
    return Project(folder.resolve())


KINDS: tuple[str, ...] = get_args(RunKind)
BLOCKWISE = ("predict", "segment", "evaluate")
# The input keys each kind accepts (train's are free-form, as before).
_INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "predict": ("checkpoint", "train_run", "volumes", "overwrite", "roi", "mask"),
    "segment": ("predict_run", "volumes", "roi"),
    "evaluate": ("segment_run", "roi"),
}


def resources(asked: ResourcesAsked, kind: str, config: cfg.ProjectConfig) -> Resources:
    """The run's resources: what `asked` names, the rest defaulted (the only place that
    does): blockwise runs take predict.num_workers and predict.executor, train runs one
    worker, locally."""
    blockwise = kind in BLOCKWISE
    workers = asked.workers
    if workers is None:
        workers = config.predict.num_workers if blockwise else 1
    executor = asked.executor
    if executor is None:
        # Where workers run is a project setting (predict.executor, overridable per run).
        executor = config.predict.executor if blockwise else "local"
    if executor not in EXECUTORS:
        raise InputError(
            f"invalid resources: executor must be {one_of(executor_names())}, got {executor!r}"
        )
    try:
        return Resources(gpus=list(asked.gpus), workers=workers, executor=executor)
    except ValidationError as exc:
        raise InputError(f"invalid resources: {cfg.describe_errors(exc)}") from None


def prepare(request: RunRequest) -> ResolvedRun:
    """The run `request` asks for, resolved (see the module docstring); with run_id and
    run_dir, its run directory written as well.

    NotFound when the project does not exist; InputError (one line) for anything else
    the run cannot use. Nothing is written unless everything resolved.
    """
    project = _project(request.project)
    kind = request.kind
    config = project.load_config()
    if request.preset:
        config = cfg.rebase(config, request.preset)
    for key, value in request.overrides.items():
        config = cfg.with_value(config, str(key), value)
    inputs, notes = fill_inputs(project, kind, dict(request.inputs), config)
    resolved = ResolvedRun(
        kind=kind,
        project=ProjectRef(name=project.name, path=str(project.path)),
        config=config.model_dump(mode="json"),
        inputs=inputs,
        resources=resources(request.resources, kind, config),
        notes=notes,
    )
    if request.run_id and request.run_dir:
        _write(
            request.run_id, Path(request.run_dir), project, kind, config, inputs, resolved.resources
        )
        resolved.id, resolved.run_dir = request.run_id, request.run_dir
    return resolved


def fill_inputs(
    project: Project, kind: str, inputs: dict[str, Any], config: cfg.ProjectConfig | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A run's inputs with lineage defaults filled in, and notes for the user.

    `config` is the run's resolved config (default: the project's); training reads its
    validation settings.

    InputError (one line) for an unknown kind or key, or anything named that does not
    exist or cannot be used.
    """
    if kind not in KINDS:
        raise InputError(f"unknown run kind {kind!r}: use {', '.join(KINDS)}")
    allowed = _INPUT_KEYS.get(kind)
    if allowed is not None:
        unknown = sorted(set(inputs) - set(allowed))
        if unknown:
            raise InputError(
                f"unknown input {unknown[0]!r} for a {kind} run: use {', '.join(allowed)}"
            )
    if kind == "train":
        return _train_inputs(project, inputs, config or project.load_config()), []
    if kind == "predict":
        return _predict_inputs(project, inputs, config or project.load_config())
    if kind == "segment":
        return _segment_inputs(project, inputs)
    return _evaluate_inputs(project, inputs), []


def _train_inputs(
    project: Project, inputs: dict[str, Any], config: cfg.ProjectConfig
) -> dict[str, Any]:
    if not inputs.get("volumes"):
        volumes = project.volumes("train")
        if not volumes:
            raise InputError(
                f"project {project.name} has no training volumes: `lsdctl data import FILE "
                f"--project {project.name}` or `lsdctl data synth --project {project.name}`"
            )
        inputs["volumes"] = [str(v) for v in volumes]
    init_from = inputs.get("init_from")
    if init_from is not None:
        if not isinstance(init_from, str) or not init_from.strip():
            raise InputError(
                "init_from must be RUN_ID, RUN_ID:ITERATION, RUN_ID:best or a .pt file"
            )
        choice = lineage.resolve_checkpoint(project.path, init_from)
        # Weights only: the new run's architecture must match them layer by layer.
        check_checkpoint(choice.path, config)
        inputs["init_from"] = str(choice.path)
    listed = _str_list(inputs.get("val_volumes"), "val_volumes")
    # Refused here, before a run directory exists: no val/ volumes, or one without labels.
    val = val_volumes(project.path, config, listed or None)
    if val:
        inputs["val_volumes"] = [str(v.resolve()) for v in val]
    else:
        inputs.pop("val_volumes", None)
    return inputs


def _predict_inputs(
    project: Project, inputs: dict[str, Any], config: cfg.ProjectConfig
) -> tuple[dict[str, Any], list[str]]:
    spec = inputs.get("checkpoint")
    if spec is not None and not isinstance(spec, str):
        raise InputError("checkpoint must be RUN_ID, RUN_ID:ITERATION or the path of a .pt file")
    choice = lineage.resolve_checkpoint(project.path, spec)
    if choice.train_run is None:
        # A file from outside the project's train runs: refused here, before a run
        # directory exists, if it is no checkpoint or its model is not this config's.
        check_checkpoint(choice.path, config)
    overwrite = inputs.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise InputError(f"overwrite must be true or false, got {overwrite!r}")
    named = _str_list(inputs.get("volumes"), "volumes")
    if named:
        volumes = [_source_volume(project, v) for v in named]
    else:
        volumes = project.volumes("test")
        if not volumes:
            raise InputError(
                f"project {project.name} has no test volumes to predict: `lsdctl data import "
                f"FILE --project {project.name} --split test`, or name volumes with --volumes"
            )
        volumes = [_check_raw(v) for v in volumes]
    _unique_stems(volumes, "volumes")
    filled: dict[str, Any] = {"checkpoint": str(choice.path)}
    # TOML has no null: a checkpoint from outside the project's runs has no train_run key.
    if choice.train_run is not None:
        filled["train_run"] = choice.train_run
    filled.update(volumes=[str(v) for v in volumes], overwrite=overwrite)
    filled.update(_region_inputs(inputs, [v / "raw" for v in volumes]))
    mask = inputs.get("mask")
    if mask is not None and (not isinstance(mask, str) or not mask):
        raise InputError("mask must name an array of the volumes, e.g. labels_mask")
    for volume in volumes if mask or config.predict.mask else []:
        name = mask or config.predict.mask
        if not (volume / name / ".zarray").is_file():
            where = "--mask" if mask else "predict.mask"
            raise InputError(
                f"volume {volume.name} has no mask array {name!r} ({where}): import one with "
                "`lsdctl data import FILE --mask MASKFILE`, or name an existing array"
            )
    if mask:
        filled["mask"] = mask
    return filled, [choice.note] if choice.note else []


def _region_inputs(inputs: dict[str, Any], arrays: Sequence[Path]) -> dict[str, Any]:
    """{"roi": TEXT} when the request names one that fits every array, else {}: refused
    here, before a run directory exists."""
    roi = inputs.get("roi")
    if roi is None or roi == "":
        return {}
    if not isinstance(roi, str):
        raise InputError(f"roi must be text ({region.SYNTAX}), got {roi!r}")
    for array in arrays:
        region.of_array(roi, array)
    return {"roi": roi.strip()}


def _segment_inputs(project: Project, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spec = inputs.get("predict_run")
    if spec is not None and not isinstance(spec, str):
        raise InputError("predict_run must be a predict run id")
    record = lineage.resolve_parent(project.path, "predict", spec)
    folder = record.dir / "predictions"
    named = _str_list(inputs.get("volumes"), "volumes")
    if named:
        volumes = [_named_zarr(v, folder, "prediction") for v in named]
    else:
        volumes = lineage.run_outputs(record.dir, "predictions")
        if not volumes:
            raise InputError(f"predict run {record.id} has no predictions in {folder}")
    for volume in volumes:
        if not (volume / "pred_affs").is_dir():
            raise InputError(
                f"{volume} has no pred_affs: segmentation needs affinities, from a model "
                f"that predicts them ({segmentable_names()})"
            )
    _unique_stems(volumes, "volumes")
    notes = []
    chosen = {
        round(float(v["threshold"]), 6): v
        for volume in volumes
        if (v := lineage.validation_of_output(volume)) is not None
    }
    for threshold, choice in sorted(chosen.items()):
        notes.append(
            f"threshold {threshold:.2f} was chosen on validation (train run "
            f"{choice.get('train_run')}, iteration {choice.get('iteration')}): segmented too"
        )
    filled = {"predict_run": str(record.dir), "volumes": [str(v) for v in volumes]}
    filled.update(_region_inputs(inputs, [v / "pred_affs" for v in volumes]))
    return filled, notes


def _evaluate_inputs(project: Project, inputs: dict[str, Any]) -> dict[str, Any]:
    spec = inputs.get("segment_run")
    if spec is not None and not isinstance(spec, str):
        raise InputError("segment_run must be a segment run id")
    record = lineage.resolve_parent(project.path, "segment", spec)
    segmentations = lineage.run_outputs(record.dir, "segmentation")
    if not segmentations:
        raise InputError(
            f"segment run {record.id} has no segmentations in {record.dir / 'segmentation'}"
        )
    for segmentation in segmentations:
        lineage.ground_truth_of(segmentation)
    filled = {"segment_run": str(record.dir)}
    # The region is placed in the segmentations (their ROI is the prediction's region).
    arrays = [next(iter(sorted(s.glob("segmentation_*"))), s / "fragments") for s in segmentations]
    filled.update(_region_inputs(inputs, arrays))
    return filled


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{what} must be a list of paths or names")
    return list(value)


def _source_volume(project: Project, given: str) -> Path:
    """A volume to predict: a path, or the name of one in the project's test/, val/ or train/."""
    path = Path(given).expanduser()
    if path.is_absolute():
        tries = [path]
    else:
        names = [given] if given.endswith(".zarr") else [given, f"{given}.zarr"]
        tries = [project.path / given]
        tries += [project.path / split / n for split in ("test", "val", "train") for n in names]
        tries.append(Path.cwd() / path)
    found = next((p for p in tries if lineage.is_dir(p)), None)
    if found is None:
        have = [v.stem for v in project.volumes("test")]
        listed = f" (test volumes: {', '.join(have)})" if have else ""
        raise InputError(
            f"volume {given} not found: give a path, or the name of a volume in "
            f"{project.name}/test, {project.name}/val or {project.name}/train{listed}"
        )
    return _check_raw(found.resolve())


def _check_raw(volume: Path) -> Path:
    if not (volume / "raw").is_dir():
        raise InputError(f"{volume} has no raw array: it is not a volume to predict")
    return volume.resolve()


def _named_zarr(given: str, folder: Path, what: str) -> Path:
    path = Path(given).expanduser()
    tries = [path] if path.is_absolute() else []
    if not path.is_absolute():
        tries += [folder / given, folder / f"{given}.zarr"]
    found = next((p for p in tries if lineage.is_dir(p)), None)
    if found is None:
        have = sorted(p.stem for p in folder.glob("*.zarr")) if folder.is_dir() else []
        listed = f": there are {', '.join(have)}" if have else ""
        raise InputError(f"no {what} {given} in {folder}{listed}")
    return found.resolve()


def _unique_stems(volumes: list[Path], what: str) -> None:
    """Outputs are named after their volume: two of one name would overwrite each other."""
    seen: dict[str, Path] = {}
    for volume in volumes:
        other = seen.setdefault(volume.stem, volume)
        if other != volume:
            raise InputError(f"{what} {other} and {volume} share the name {volume.stem}")
        if volumes.count(volume) > 1:
            raise InputError(f"{what}: {volume} is named twice")


def write(request: WriteRequest) -> Written:
    """Write run.toml for a run resolved before (`request.config` is validated again;
    resources not named are filled as `prepare` fills them)."""
    project = _project(request.project)
    config = cfg.validate(request.config, source="resolved config")
    _write(
        request.run_id,
        Path(request.run_dir),
        project,
        request.kind,
        config,
        dict(request.inputs),
        resources(request.resources, request.kind, config),
    )
    return Written()


def _write(
    run_id: str,
    run_dir: Path,
    project: Project,
    kind: str,
    config: cfg.ProjectConfig,
    inputs: dict[str, Any],
    chosen: Resources,
) -> None:
    try:
        spec = RunSpec(
            id=run_id,
            kind=kind,  # type: ignore[arg-type]
            project=str(project.path),
            config=config,
            inputs=inputs,
            resources=chosen,
        )
    except ValidationError as exc:
        raise InputError(f"invalid run: {cfg.describe_errors(exc)}") from None
    write_spec(run_dir, spec)


def _parse(line: str) -> RunRequest | WriteRequest:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise InputError("a request is a JSON object")
    op = data.get("op")
    if op == "prepare":
        return RunRequest.model_validate(data)
    if op == "write":
        return WriteRequest.model_validate(data)
    raise InputError(f"unknown op {op!r}: use {', '.join(OPS)}")


def answer(line: str) -> ResolvedRun | Written | Refused:
    """One request line → one answer; never raises."""
    try:
        request = _parse(line)
        if isinstance(request, RunRequest):
            return prepare(request)
        return write(request)
    except NotFound as exc:
        return Refused(status=404, message=str(exc))
    except InputError as exc:
        return Refused(status=422, message=str(exc))
    except ValidationError as exc:  # a ValueError too: its own message is many lines
        return Refused(status=422, message=f"bad request: {cfg.describe_errors(exc)}")
    except (ValueError, KeyError, TypeError) as exc:
        return Refused(status=422, message=f"bad request: {type(exc).__name__}: {exc}")
    except OSError as exc:
        return Refused(status=500, message=f"{exc.strerror}: {exc.filename}")
    except Exception as exc:  # the helper must outlive any one bad request
        logger.exception("resolve failed")
        return Refused(status=500, message=f"{type(exc).__name__}: {exc}")


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    for line in stdin:
        if line.strip():
            stdout.write(answer(line).model_dump_json() + "\n")
            stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runs.resolve", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="Answer requests on stdin.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if not args.serve:
        parser.error("only --serve is supported")
    # Replies own stdout: anything else printing there would corrupt the protocol.
    replies = sys.stdout
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
