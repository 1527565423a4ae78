"""Masks: a uint8 array of a volume (non-zero = the region a lab cares about).

Predict skips the blocks with no masked voxel (their output stays 0), segment makes no
fragments outside the mask, evaluate scores only masked voxels. A mask is named by its
array in the source volume (`labels_mask`, or a tissue mask imported with
`lsdctl data import --mask`); its voxel size may be a whole multiple of the volume's (a
coarse tissue mask), and voxels beyond its extent count as outside it.

`digest` identifies a mask's content for resume and provenance hashes without reading
its voxels: the stored chunks' bytes (compressed, so an all-zero chunk costs nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError

MASK_ATTR = "mask"


class Mask:
    """A mask array with its place in the world, read at another array's voxel size."""

    def __init__(self, volume: Path, name: str, voxel_size: Sequence[int]) -> None:
        import zarr

        path = volume / name
        try:
            self.array = zarr.open_array(str(path), mode="r")
        except (zarr.errors.PathNotFoundError, FileNotFoundError, ValueError):
            raise InputError(
                f"{volume} has no mask array {name!r}: import one with `lsdctl data import "
                "--mask FILE`, or name an existing uint8 array"
            ) from None
        attrs = self.array.attrs.asdict()
        dims = len(voxel_size)
        self.voxel_size = tuple(int(v) for v in attrs.get("voxel_size") or voxel_size)
        self.offset = tuple(int(o) for o in attrs.get("offset") or (0,) * dims)
        self.target = tuple(int(v) for v in voxel_size)
        if self.array.ndim != dims or len(self.voxel_size) != dims:
            raise InputError(f"mask {path} is {self.array.ndim}D, the volume {dims}D")
        if any(m % t for m, t in zip(self.voxel_size, self.target)):
            raise InputError(
                f"mask {path} has voxel size {list(self.voxel_size)}, not a whole multiple of "
                f"the volume's {list(self.target)}: resample it"
            )
        self.path = path

    def read(self, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
        """Boolean mask of the world window `start` + `shape` (nm) at the target voxel size."""
        from engine.data.volume import read_window

        coarse = self.voxel_size
        lo = [s - (s - o) % v for s, o, v in zip(start, self.offset, coarse)]
        hi = [e + (-(e - o)) % v for e, o, v in zip(_ends(start, shape), self.offset, coarse)]
        window = read_window(self.array, coarse, self.offset, lo, [h - a for a, h in zip(lo, hi)])
        for axis, (v, t) in enumerate(zip(coarse, self.target)):
            if v != t:
                window = np.repeat(window, v // t, axis=axis)
        crop = tuple(
            slice((s - a) // t, (s - a) // t + n // t)
            for s, a, n, t in zip(start, lo, shape, self.target)
        )
        return window[crop] > 0

    def covers(self, start: Sequence[int], shape: Sequence[int]) -> bool:
        """Whether any voxel of the window is masked in."""
        return bool(self.read(start, shape).any())


def _ends(start: Sequence[int], shape: Sequence[int]) -> list[int]:
    return [s + n for s, n in zip(start, shape)]


def digest(volume: Path, name: str) -> str:
    """sha256 of the mask array's metadata and stored chunks, in name order."""
    folder = volume / name
    hasher = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".zattrs"):
        hasher.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                hasher.update(chunk)
    return hasher.hexdigest()


def describe(volume: Path, name: str) -> dict[str, Any]:
    """What an output records of its mask (attribute `mask`): enough to reopen it and to
    tell whether it changed."""
    return {"volume": str(volume), "array": name, "sha256": digest(volume, name)}


def recorded(attrs: dict[str, Any]) -> tuple[Path, str] | None:
    """The (volume, array) an output's `mask` attribute names, if any."""
    found = attrs.get(MASK_ATTR)
    if isinstance(found, dict) and found.get("volume") and found.get("array"):
        return Path(str(found["volume"])), str(found["array"])
    return None
