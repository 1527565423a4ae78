"""`lsdctl predict`: predict affinities and LSDs blockwise with a trained model.

By default on the newest train run's checkpoint (engine.project.lineage). The run goes to the
daemon, or with `--local` runs in the foreground (cli/_submit.py).
"""

from __future__ import annotations

from typing import Any

import typer

from lsdctl.cli._guard import guarded
from lsdctl.cli._project import resolve_project
from lsdctl.cli._step_options import (
    DETACH,
    EXECUTOR,
    JSON,
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
def predict(
    project: str | None = PROJECT,
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="RUN_ID (its latest checkpoint), RUN_ID:ITERATION, RUN_ID:best (its best on "
        "validation) or a .pt file (default: the newest train run's best checkpoint on "
        "validation, else its latest).",
    ),
    workers: int | None = WORKERS,
    executor: str | None = EXECUTOR,
    volumes: list[str] = typer.Option(
        [],
        "--volumes",
        help="A volume to predict: a path, or a name in the project's test/, val/ or train/ "
        "(repeatable; default: every test volume).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Predict again where a prediction exists already."
    ),
    roi: str | None = ROI,
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
    local: bool = LOCAL,
    detach: bool = DETACH,
    as_json: bool = JSON,
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
    check_executor(executor)
    proj = resolve_project(project)
    inputs: dict[str, Any] = {"overwrite": overwrite}
    if checkpoint is not None:
        inputs["checkpoint"] = pathish(checkpoint) if _looks_like_path(checkpoint) else checkpoint
    if volumes:
        inputs["volumes"] = [pathish(v) for v in volumes]
    inputs.update(roi_input(roi))
    if mask is not None:
        inputs["mask"] = mask
    overrides: dict[str, Any] = {"predict.executor": executor} if executor else {}
    start_run(proj, "predict", inputs, overrides, workers, gpus, local, detach, as_json=as_json)


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".pt") or "/" in spec
