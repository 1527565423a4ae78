"""`python -m engine.resolve --serve`: resolve and write run configs for the daemon.

The daemon imports no engine code; it keeps one of these helpers running and asks it,
one JSON object a line on stdin, answered one JSON object a line on stdout:

  {"op": "prepare", "project": PATH, "kind": K, "preset": NAME|null,
   "overrides": {"dotted.key": value}, "inputs": {...},
   "run_id": ID, "run_dir": PATH, "resources": {...}}
    Loads PATH/project.toml, rebases it on `preset` if given, applies the overrides
    (engine.config.with_value), validates, fills a training run's volumes, and when
    run_id and run_dir are given writes RUN_DIR/run.toml (engine.rundir.write_spec).
    → {"ok": true, "config": {...}, "inputs": {...}, "project": {"name": N, "path": P}}
  {"op": "write", "project": PATH, "kind": K, "run_id": ID, "run_dir": PATH,
   "config": {...}, "inputs": {...}, "resources": {...}}
    Writes run.toml from a config resolved before (validated again). → {"ok": true}

Errors answer {"ok": false, "status": 404 (no such project) | 422 (invalid), "message":
one line}. The helper exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from engine import config as cfg
from engine.errors import InputError
from engine.project import CONFIG_FILE, Project
from engine.rundir import Resources, RunSpec, write_spec

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


def _resources(data: Any) -> Resources:
    try:
        return Resources.model_validate(data or {})
    except ValidationError as exc:
        raise InputError(f"invalid resources: {cfg.describe_errors(exc)}") from None


def prepare(request: dict[str, Any]) -> dict[str, Any]:
    project = _project(str(request["project"]))
    kind = str(request["kind"])
    config = project.load_config()
    preset = request.get("preset")
    if preset:
        config = cfg.rebase(config, str(preset))
    overrides = request.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise InputError("overrides must map dotted config keys to values")
    for key, value in overrides.items():
        config = cfg.with_value(config, str(key), value)
    inputs = dict(request.get("inputs") or {})
    if kind == "train" and not inputs.get("volumes"):
        volumes = project.volumes("train")
        if not volumes:
            raise InputError(
                f"project {project.name} has no training volumes: `lsdctl data import FILE "
                f"--project {project.name}` or `lsdctl data synth --project {project.name}`"
            )
        inputs["volumes"] = [str(v) for v in volumes]
    answer: dict[str, Any] = {
        "ok": True,
        "config": config.model_dump(mode="json"),
        "inputs": inputs,
        "project": {"name": project.name, "path": str(project.path)},
    }
    if request.get("run_id") and request.get("run_dir"):
        _write(request, project, kind, config, inputs)
    return answer


def write(request: dict[str, Any]) -> dict[str, Any]:
    project = _project(str(request["project"]))
    config = cfg.validate(request.get("config") or {}, source="resolved config")
    _write(request, project, str(request["kind"]), config, dict(request.get("inputs") or {}))
    return {"ok": True}


def _write(
    request: dict[str, Any],
    project: Project,
    kind: str,
    config: cfg.ProjectConfig,
    inputs: dict[str, Any],
) -> None:
    try:
        spec = RunSpec(
            id=str(request["run_id"]),
            kind=kind,  # type: ignore[arg-type]
            project=str(project.path),
            config=config,
            inputs=inputs,
            resources=_resources(request.get("resources")),
        )
    except ValidationError as exc:
        raise InputError(f"invalid run: {cfg.describe_errors(exc)}") from None
    write_spec(Path(str(request["run_dir"])), spec)


_OPS = {"prepare": prepare, "write": write}


def answer(line: str) -> dict[str, Any]:
    """One request line → one answer; never raises."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise InputError("a request is a JSON object")
        op = _OPS.get(str(request.get("op")))
        if op is None:
            raise InputError(f"unknown op {request.get('op')!r}: use {', '.join(_OPS)}")
        return op(request)
    except NotFound as exc:
        return {"ok": False, "status": 404, "message": str(exc)}
    except InputError as exc:
        return {"ok": False, "status": 422, "message": str(exc)}
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "status": 422, "message": f"bad request: {type(exc).__name__}: {exc}"}
    except OSError as exc:
        return {"ok": False, "status": 500, "message": f"{exc.strerror}: {exc.filename}"}
    except Exception as exc:  # the helper must outlive any one bad request
        logger.exception("resolve failed")
        return {"ok": False, "status": 500, "message": f"{type(exc).__name__}: {exc}"}


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    for line in stdin:
        if line.strip():
            stdout.write(json.dumps(answer(line)) + "\n")
            stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.resolve", description=__doc__)
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
