"""What a predict run writes: its volumes and their block grids, the output arrays, and
the hashes that tell a resumable output from another prediction's.

A predict run and validation during training plan alike (`plan_predictions`); the
outputs `pred_affs` and `pred_lsds` (uint8, channels first, voxel size and offset of the
raw) are chunked to the write block, so no two blocks share a chunk. Each output records
the hash of the checkpoint and of the settings that shape the prediction
(`settings_hash`): a run started again on outputs with the same hashes does only the
blocks not yet done; other hashes are refused unless overwriting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.blockwise.task import Grid
from engine.contract import RUN_FILE
from engine.data.mask import Mask
from engine.data.region import Region
from engine.data.region import resolve as resolve_region
from engine.data.volume import RAW, create_array
from engine.errors import InputError
from engine.models.registry import model_type_spec
from engine.project.config import ProjectConfig
from engine.runs.spec import RunSpec, read_spec

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
AFFS, LSDS = "pred_affs", "pred_lsds"
TRACKING = ".blocks"


@dataclass(frozen=True)
class VolumePlan:
    """One volume to predict: where its raw is, where the outputs go, the block grid."""

    source: Path
    output: Path
    grid: Grid
    voxel_size: tuple[int, ...]
    shape: tuple[int, ...]
    raw_offset: tuple[int, ...] = ()
    """Where the source's raw starts (nm); the grid starts at the region's offset."""
    region: Region | None = None
    """The part of the volume predicted (`--roi`); None: all of it."""
    mask: str = ""
    """The mask array of the source volume whose empty blocks are skipped; "": none."""

    @property
    def task_id(self) -> str:
        return f"predict-{self.source.stem}"

    def region_attrs(self) -> dict[str, Any]:
        """What the output records of its region and mask; hashed for resume."""
        from engine.data import mask

        return {
            "roi": self.region.as_json() if self.region else None,
            mask.MASK_ATTR: mask.describe(self.source, self.mask) if self.mask else None,
        }


def network_config(spec: RunSpec) -> ProjectConfig:
    """The config the checkpoint was trained with, when its training run is known.

    The network must be rebuilt as it was trained, whatever the project's config says
    now; only the predict section (blocks, workers) comes from this run.
    """
    checkpoint = Path(str(spec.inputs.get("checkpoint", "")))
    train_run = checkpoint.parent.parent
    if (train_run / RUN_FILE).is_file():
        trained = read_spec(train_run).config
        return trained.model_copy(update={"predict": spec.config.predict})
    return spec.config


def checkpoint_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_hash(config: ProjectConfig) -> str:
    """What shapes the values and the layout of a prediction, hashed."""
    relevant = {
        "model": config.model.model_dump(mode="json"),
        "model_type": config.train.model_type.value,
        "neighborhood": config.affinity_neighborhood(),
        "voxel_size": list(config.data.voxel_size),
        "normalize": config.preprocess.normalize,
        # Not the batch size: it does not change a value.
        "precision": config.predict.precision,
        "block_shape": config.block_shape(),
        "context": config.context(),
    }
    if config.predict.input_shape is not None:
        # Only when set, so that the outputs of runs from before the key still resume.
        relevant["tile_input"] = config.predict_shapes()[0]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def plan_volumes(spec: RunSpec, config: ProjectConfig, run_dir: Path) -> list[VolumePlan]:
    """The volumes a predict run names and their block grids; InputError for anything
    unusable."""
    listed = spec.inputs.get("volumes")
    if listed:
        volumes = [Path(str(v)) for v in listed]
    else:
        volumes = sorted((Path(spec.project) / "test").glob("*.zarr"))
    if not volumes:
        raise InputError(
            f"no volumes to predict in {Path(spec.project) / 'test'}: import one with "
            "`lsdctl data import FILE --split test` or name them with --volumes"
        )
    output_dir = Path(str(spec.inputs.get("output_dir") or run_dir / PREDICTIONS))
    roi = spec.inputs.get("roi")
    mask = str(spec.inputs.get("mask") or config.predict.mask)
    return plan_predictions(volumes, config, output_dir, str(roi) if roi else None, mask)


def plan_predictions(
    volumes: Sequence[Path],
    config: ProjectConfig,
    output_dir: Path,
    roi: str | None = None,
    mask: str = "",
) -> list[VolumePlan]:
    """Block grids of `volumes`, predicted into `output_dir/NAME.zarr` (predict runs and
    validation during training plan alike), over the region `roi` of each (engine.data.region
    syntax; None: the whole volume); `mask` names the array whose empty blocks are skipped."""
    import zarr

    dims = config.data.dims
    block_voxels = config.block_shape()
    context_voxels = config.context()
    plans = []
    for volume in volumes:
        try:
            raw = zarr.open(str(volume / RAW), mode="r")
        except (zarr.errors.PathNotFoundError, FileNotFoundError, ValueError):
            raise InputError(f"{volume} has no raw array: is it a project volume?") from None
        attrs = raw.attrs.asdict()
        voxel_size = tuple(int(v) for v in attrs.get("voxel_size", config.data.voxel_size))
        offset = tuple(int(v) for v in attrs.get("offset", [0] * dims))
        if len(voxel_size) != dims or raw.ndim != dims:
            raise InputError(
                f"{volume}: raw is {raw.ndim}D with voxel size {list(voxel_size)}, but the "
                f"model is {dims}D"
            )
        if list(voxel_size) != list(config.data.voxel_size):
            raise InputError(
                f"{volume} has voxel size {list(voxel_size)}, the model was trained at "
                f"{list(config.data.voxel_size)}: predict volumes of the training resolution"
            )
        region = (
            resolve_region(roi, voxel_size, offset, raw.shape, f"{volume.name}/raw")
            if roi
            else None
        )
        if mask:
            Mask(volume, mask, voxel_size)  # refused now if missing or unusable
        grid = Grid(
            offset=region.offset if region else offset,
            extent=region.shape if region else tuple(s * v for s, v in zip(raw.shape, voxel_size)),
            block=tuple(b * v for b, v in zip(block_voxels, voxel_size)),
            context=tuple(c * v for c, v in zip(context_voxels, voxel_size)),
        )
        shape = region.voxel_shape(voxel_size) if region else tuple(raw.shape)
        plans.append(
            VolumePlan(
                volume.resolve(),
                output_dir / volume.name,
                grid,
                voxel_size,
                shape,
                raw_offset=offset,
                region=region,
                mask=mask,
            )
        )
    names = [p.output.name for p in plans]
    if len(set(names)) != len(names):
        raise InputError(f"two volumes share a name ({names}): outputs would collide")
    return plans


def prepare_outputs(
    plan: VolumePlan, config: ProjectConfig, hashes: dict[str, str], overwrite: bool
) -> None:
    """Create the output arrays, or check that existing ones belong to this prediction."""
    import zarr

    if plan.output.exists():
        found = zarr.open_group(str(plan.output), mode="r").attrs.asdict()
        stale = {k: found.get(k) for k in hashes if found.get(k) != hashes[k]}
        if not stale:
            return
        if not overwrite:
            what = " and ".join(k.replace("_sha256", "") for k in stale)
            raise InputError(
                f"{plan.output} holds a prediction with another {what}: pass --overwrite to "
                "replace it, or predict into a new run"
            )
        logger.info("--overwrite: removing %s", plan.output)
        shutil.rmtree(plan.output)
    block = config.block_shape()
    outputs = model_type_spec(config.train.model_type).predicts
    channels = {AFFS: len(config.affinity_neighborhood()), LSDS: config.num_lsds()}
    for name in outputs:
        create_array(
            plan.output,
            name,
            (channels[name], *plan.shape),
            np.uint8,
            plan.voxel_size,
            plan.grid.offset,
            chunks=(channels[name], *block),
        )
    root = zarr.open_group(str(plan.output), mode="a")
    # Hashes last: an output without them is incomplete and gets recreated.
    root.attrs.update(
        {
            **plan.region_attrs(),
            "source_volume": str(plan.source),
            "model_type": config.train.model_type.value,
            "neighborhood": config.affinity_neighborhood(),
            **hashes,
        }
    )
