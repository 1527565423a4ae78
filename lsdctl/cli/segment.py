"""`lsdctl segment`: fragments, then agglomeration at each threshold, blockwise.

By default on the newest succeeded predict run (engine.project.lineage). The run goes to the
daemon, or with `--local` runs in the foreground (cli/_submit.py).
"""

from __future__ import annotations

import math
from typing import Any

import typer

from engine.errors import InputError
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import resolve_project
from lsdctl.cli._step_options import (
    DETACH,
    JSON,
    LOCAL,
    PROJECT,
    ROI,
    WORKERS,
    pathish,
    roi_input,
)
from lsdctl.cli._submit import start_run

# Segmentations are stored as segmentation_<threshold %.2f>: at most this many distinct.
_MAX_THRESHOLDS = 99


@guarded
def segment(
    project: str | None = PROJECT,
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
    workers: int | None = WORKERS,
    roi: str | None = ROI,
    local: bool = LOCAL,
    detach: bool = DETACH,
    as_json: bool = JSON,
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
        inputs["predict_run"] = pathish(from_run) if "/" in from_run else from_run
    inputs.update(roi_input(roi))
    start_run(proj, "segment", inputs, overrides, workers, 0, local, detach, as_json=as_json)


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
