"""Where a project volume came from: the `provenance` attribute of its zarr group.

Written by `data import` (the source file and key of each array, the source voxels
copied, the world ROI) and by `data synth` (the generator's arguments), so that
`data check` can tell when a validation or test volume shares voxels with a training
volume: scores measured on voxels the model was trained on are optimistic.

Volumes written before provenance existed, or by other tools, have none: `read`
returns None for them and nothing is compared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

logger = logging.getLogger(__name__)

ATTRIBUTE = "provenance"


class SourceArray(BaseModel):
    """One array of a source file: its absolute path, and its key inside (None: TIFF)."""

    path: str
    key: str | None = None


class WorldRoi(BaseModel):
    """A region in world units (nm): where the volume sits."""

    offset: list[int]
    shape: list[int]


class Imported(BaseModel):
    kind: Literal["import"] = "import"
    raw: SourceArray
    labels: SourceArray | None = None
    mask: SourceArray | None = None
    # The voxels of the raw source that were copied ([start, stop) per axis; a 2D image
    # imported into a 3D project counts as one section). Compared in source voxels, not
    # in nm, so that --offset or --voxel-size given to one import and not to another
    # cannot hide an overlap.
    source_start: list[int]
    source_stop: list[int]
    roi: WorldRoi
    voxel_size: list[int]


class Synthesized(BaseModel):
    kind: Literal["synth"] = "synth"
    seed: int
    shape: list[int]
    voxel_size: list[int]
    cell_size_nm: float | None = None
    roi: WorldRoi


Provenance = Annotated[Imported | Synthesized, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Imported | Synthesized] = TypeAdapter(Provenance)


class Overlap(NamedTuple):
    """Why two volumes share voxels, and what to do about it."""

    detail: str
    remedy: str


def world_roi(offset: Sequence[int], shape: Sequence[int], voxel_size: Sequence[int]) -> WorldRoi:
    return WorldRoi(
        offset=[int(o) for o in offset],
        shape=[int(s) * int(v) for s, v in zip(shape, voxel_size)],
    )


def to_attrs(provenance: Imported | Synthesized) -> dict[str, Any]:
    """The group attributes to write: `{"provenance": {...}}`."""
    return {ATTRIBUTE: provenance.model_dump(mode="json")}


def parse(value: Any) -> Imported | Synthesized | None:
    """A provenance from its JSON form; None when absent or not one this version knows."""
    if value is None:
        return None
    try:
        return _ADAPTER.validate_python(value)
    except ValidationError:
        # A newer or hand-edited record: the volume is still usable, only not compared.
        logger.debug("unreadable provenance %r", value)
        return None


def read(container: Path) -> Imported | Synthesized | None:
    """The provenance of a volume, read from `.zattrs` directly (no zarr import)."""
    try:
        attrs = json.loads((container / ".zattrs").read_text())
    except (OSError, ValueError):
        return None
    return parse(attrs.get(ATTRIBUTE) if isinstance(attrs, dict) else None)


def overlap(a: Imported | Synthesized, b: Imported | Synthesized) -> Overlap | None:
    """How `a` and `b` share voxels, or None when they do not (as far as is known).

    Imports overlap when their raw arrays are the same array of the same file and the
    copied source voxels intersect; synthetic volumes when every argument of the
    generator is the same (then they are the same volume). Volumes of different files
    are taken as disjoint: copies of one file under two names cannot be told apart.
    """
    if isinstance(a, Imported) and isinstance(b, Imported):
        if (a.raw.path, a.raw.key) != (b.raw.path, b.raw.key):
            return None
        if len(a.source_start) != len(b.source_start):
            return None
        lo = [max(x, y) for x, y in zip(a.source_start, b.source_start)]
        hi = [min(x, y) for x, y in zip(a.source_stop, b.source_stop)]
        if any(h <= low for low, h in zip(lo, hi)):
            return None
        where = a.raw.path + (f":{a.raw.key}" if a.raw.key else "")
        axes = ["z", "y", "x"][-len(lo) :]  # sources are 2D or 3D
        voxels = ", ".join(f"{n} {low}:{h}" for n, low, h in zip(axes, lo, hi))
        return Overlap(
            f"same file {where}, source voxels {voxels}", "re-import with disjoint --crop"
        )
    if isinstance(a, Synthesized) and isinstance(b, Synthesized):
        same = (a.seed, a.shape, a.voxel_size, a.cell_size_nm) == (
            b.seed,
            b.shape,
            b.voxel_size,
            b.cell_size_nm,
        )
        if not same:
            return None
        return Overlap(
            f"the same synthetic volume: seed {a.seed}, shape {a.shape}",
            "make it again with another --seed",
        )
    return None
