"""Regions of interest: the `--roi` text of predict, segment and evaluate, and its checks.

Syntax, z first, one `START:STOP` range per axis, separated by commas, STOP excluded:

  `400:2000,0:40000,0:40000`        world coordinates in nm (as the volume's offset is)
  `10:50,0:1000,0:1000vx`           voxels, counted from the volume's first voxel

A region is checked against the array it is cut from before anything is written: it
must have one range per axis, be non-empty, lie inside the array and fall on its voxel
grid. Every failure is an InputError of one line that says what to type instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError

VOXEL_SUFFIX = "vx"
SYNTAX = "z0:z1,y0:y1,x0:x1 in nm, or the same in voxels with a 'vx' suffix"
_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class RoiText:
    """A parsed `--roi`: per axis [start, stop), in nm or in voxels (`voxels`)."""

    starts: tuple[int, ...]
    stops: tuple[int, ...]
    voxels: bool
    text: str


@dataclass(frozen=True)
class Region:
    """A region in world units (nm), z first: where an output starts and how far it goes."""

    offset: tuple[int, ...]
    shape: tuple[int, ...]

    def voxel_shape(self, voxel_size: Sequence[int]) -> tuple[int, ...]:
        return tuple(s // v for s, v in zip(self.shape, voxel_size))

    def as_json(self) -> dict[str, list[int]]:
        return {"offset": list(self.offset), "shape": list(self.shape)}


def parse(text: str) -> RoiText:
    """`text` as ranges; InputError when it is not the syntax above."""
    body = text.strip()
    voxels = body.lower().endswith(VOXEL_SUFFIX)
    if voxels:
        body = body[: -len(VOXEL_SUFFIX)]
    matches = [_RANGE.match(part) for part in body.split(",")]
    if not body or not all(matches):
        raise InputError(f"--roi {text!r} is not {SYNTAX} (e.g. 0:4000,0:40000,0:40000)")
    pairs = [(int(m.group(1)), int(m.group(2))) for m in matches if m]
    for axis, (start, stop) in enumerate(pairs):
        if stop <= start:
            raise InputError(
                f"--roi {text!r} is empty along axis {axis}: ({start}:{stop}); STOP must be "
                "larger than START"
            )
    return RoiText(tuple(a for a, _ in pairs), tuple(b for _, b in pairs), voxels, text.strip())


def resolve(
    roi: RoiText | str,
    voxel_size: Sequence[int],
    offset: Sequence[int],
    shape: Sequence[int],
    what: str,
) -> Region:
    """The region `roi` names in an array of `shape` voxels at world `offset` (nm).

    InputError when it has the wrong number of axes, is not on the voxel grid (nm
    regions) or reaches outside the array; `what` names the array in the message.
    """
    parsed = parse(roi) if isinstance(roi, str) else roi
    dims = len(voxel_size)
    if len(parsed.starts) != dims:
        raise InputError(
            f"--roi {parsed.text!r} has {len(parsed.starts)} axes, {what} has {dims}: give "
            f"{dims} ranges, z first"
        )
    if parsed.voxels:
        starts = [o + s * v for o, s, v in zip(offset, parsed.starts, voxel_size)]
        stops = [o + s * v for o, s, v in zip(offset, parsed.stops, voxel_size)]
    else:
        starts, stops = list(parsed.starts), list(parsed.stops)
        for axis, (a, b, o, v) in enumerate(zip(starts, stops, offset, voxel_size)):
            if (a - o) % v or (b - o) % v:
                lo, hi = a - (a - o) % v, b + (-(b - o)) % v
                raise InputError(
                    f"--roi {parsed.text!r} is not on the voxel grid of {what} along axis "
                    f"{axis} (voxel size {v} nm, offset {o} nm): use {lo}:{hi} there"
                )
    ends = [o + n * v for o, n, v in zip(offset, shape, voxel_size)]
    if any(a < o or b > e for a, b, o, e in zip(starts, stops, offset, ends)):
        extent = ",".join(f"{o}:{e}" for o, e in zip(offset, ends))
        voxels = ",".join(f"0:{n}" for n in shape)
        raise InputError(
            f"--roi {parsed.text!r} reaches outside {what}, which spans {extent} nm "
            f"({voxels}vx): choose a region inside it"
        )
    return Region(tuple(starts), tuple(b - a for a, b in zip(starts, stops)))


def of_array(roi: str, path: Path) -> Region:
    """The region `roi` names in the zarr array at `path` (its funlib voxel size and
    offset attributes; channels first, as predictions, are allowed)."""
    import zarr

    try:
        array = zarr.open_array(str(path), mode="r")
    except (zarr.errors.PathNotFoundError, FileNotFoundError, ValueError):
        raise InputError(f"{path} is not a zarr array: cannot place --roi in it") from None
    attrs = array.attrs.asdict()
    voxel_size = [int(v) for v in attrs.get("voxel_size") or attrs.get("resolution") or []]
    dims = len(voxel_size) or array.ndim
    voxel_size = voxel_size or [1] * dims
    offset = [int(o) for o in attrs.get("offset") or [0] * dims]
    name = f"{path.parent.name}/{path.name}"
    return resolve(roi, voxel_size, offset, array.shape[-dims:], name)
