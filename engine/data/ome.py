"""OME-NGFF 0.4 metadata for lsdctl's zarr containers, beside funlib's attributes.

lsdctl's layout keeps arrays directly in their container (`VOLUME.zarr/raw`,
`VOLUME.zarr/labels`, `PRED.zarr/pred_affs`, `SEG.zarr/segmentation_0.55`), which is
what funlib's `open_ds`, gunpowder and `zarr.open` read. OME-NGFF 0.4 puts its
`multiscales` on a *group* whose datasets are paths below it; the usual layout, a group
per image with its array at `s0`, would move every array one level down and break every
existing reader. So the container group carries one `multiscales` entry per array
instead, named by the array, whose single dataset is the array's own path:

    VOLUME.zarr/.zattrs  {"multiscales": [
        {"version": "0.4", "name": "raw", "axes": [z, y, x in nanometer],
         "datasets": [{"path": "raw", "coordinateTransformations": [
             {"type": "scale", "scale": VOXEL_SIZE},
             {"type": "translation", "translation": OFFSET}]}]},
        {"version": "0.4", "name": "labels", ...}, ...]}

The spec allows several multiscales on one group; readers that take only the first
(ome-zarr-py, and so napari-ome-zarr; neuroglancer's `zarr://` on the group) see `raw`,
which is kept first. Channel-first arrays (`pred_affs`, `pred_lsds`, snapshots'
targets) get a leading axis of type "channel" (scale 1, translation 0). Every other
entry is reachable by name, and `single_image` turns one into the attributes of a group
holding that array alone at "s0", which is how `lsdctl view` serves each array to
neuroglancer.

Written with plain JSON (no zarr import), so the CLI can read it back cheaply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VERSION = "0.4"
SPACE_UNIT = "nanometer"
# The array every reader that takes only the first multiscales entry should see.
_FIRST = "raw"
_SPACE = ("z", "y", "x")


def multiscale(
    name: str,
    ndim: int,
    voxel_size: Sequence[int],
    offset: Sequence[int],
    path: str | None = None,
) -> dict[str, Any]:
    """The OME-NGFF 0.4 multiscales entry of one array of `ndim` dimensions.

    Its last `len(voxel_size)` axes are spatial (z, y, x in nm); at most one leading axis
    is a channel axis. `path` is the dataset's path in the group (default: `name`).
    """
    dims = len(voxel_size)
    channels = ndim - dims
    if channels not in (0, 1) or dims not in (2, 3):
        raise ValueError(
            f"OME-NGFF 0.4 has no axes for {name}: {ndim} dimensions with {dims} spatial"
        )
    axes: list[dict[str, str]] = [{"name": "c", "type": "channel"}] * channels
    axes = [*axes, *({"name": n, "type": "space", "unit": SPACE_UNIT} for n in _SPACE[-dims:])]
    scale = [1.0] * channels + [float(v) for v in voxel_size]
    translation = [0.0] * channels + [float(o) for o in offset]
    return {
        "version": VERSION,
        "name": name,
        "axes": axes,
        "datasets": [
            {
                "path": path or name,
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }
        ],
    }


def with_entry(attrs: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """`attrs` (a container group's) with `entry` in its multiscales, in the place of the
    entry of the same name, else last; `raw` is always first."""
    found = attrs.get("multiscales")
    listed = [e for e in (found if isinstance(found, list) else []) if isinstance(e, dict)]
    names = [e.get("name") for e in listed]
    if entry["name"] in names:
        listed[names.index(entry["name"])] = entry
    else:
        listed.append(entry)
    listed.sort(key=lambda e: e.get("name") != _FIRST)
    return {**attrs, "multiscales": listed}


def add(
    container: Path, name: str, ndim: int, voxel_size: Sequence[int], offset: Sequence[int]
) -> None:
    """Record array `container/name` in the container group's multiscales (see above)."""
    entry = multiscale(name, ndim, voxel_size, offset)
    attrs_file = Path(container) / ".zattrs"
    attrs = _read(attrs_file)
    tmp = attrs_file.with_name(f".zattrs.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(with_entry(attrs, entry), indent=4, sort_keys=True))
    os.replace(tmp, attrs_file)


def entry(container: Path, name: str) -> dict[str, Any] | None:
    """The multiscales entry of array `name` in `container`, if it has one."""
    found = _read(Path(container) / ".zattrs").get("multiscales")
    for item in found if isinstance(found, list) else []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


def single_image(entry: dict[str, Any], path: str = "s0") -> dict[str, Any]:
    """The attributes of a group that holds the entry's array alone, at `path`."""
    datasets = [{**entry["datasets"][0], "path": path}]
    return {"multiscales": [{**entry, "datasets": datasets}]}


def scale_and_translation(entry: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(scale, translation) of an entry's dataset (translation zeros when absent)."""
    scale: list[float] = []
    translation: list[float] | None = None
    for transform in entry["datasets"][0]["coordinateTransformations"]:
        if transform["type"] == "scale":
            scale = [float(v) for v in transform["scale"]]
        elif transform["type"] == "translation":
            translation = [float(v) for v in transform["translation"]]
    return scale, translation or [0.0] * len(scale)


def _read(attrs_file: Path) -> dict[str, Any]:
    try:
        attrs = json.loads(attrs_file.read_text())
    except (OSError, ValueError):
        return {}
    return attrs if isinstance(attrs, dict) else {}
