"""Readers for the formats volumes arrive in: HDF5 (CREMI-style or any key), TIFF, zarr/N5.

A reader opens a file lazily and returns a `Source`: an array-like that supports numpy
slicing (h5py dataset, zarr array), plus whatever voxel size and offset the file stores.
Nothing is read into memory here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError

HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5", ".he5")
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr", ".n5")

# Where well-known layouts keep their arrays, most specific first.
RAW_KEYS = ("volumes/raw", "raw", "volumes/image", "image", "stack", "data")
LABELS_KEYS = ("volumes/labels/neuron_ids", "labels", "volumes/labels", "neuron_ids", "gt", "stack")
MASK_KEYS = ("volumes/labels/mask", "volumes/labels/labels_mask", "labels_mask", "mask", "stack")


@dataclass
class Source:
    """One array of a file: lazily sliceable, with the metadata the file carries."""

    path: Path
    key: str | None
    array: Any  # supports .shape, .dtype and numpy slicing
    voxel_size: tuple[int, ...] | None = None
    offset: tuple[int, ...] | None = None
    handle: Any = None  # the open file, closed by close()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self.array.dtype)
        return dtype

    @property
    def label(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)

    def close(self) -> None:
        if self.handle is not None and hasattr(self.handle, "close"):
            self.handle.close()


def open_source(path: Path, key: str | None, role: str) -> Source:
    """Open `key` (or the array found for `role`: raw, labels or mask) of `path`."""
    if not path.exists():
        raise InputError(f"{role} file {path} does not exist: check the path")
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return _open_hdf5(path, key, role)
    if suffix in TIFF_SUFFIXES:
        if key:
            raise InputError(f"{path} is a TIFF file, which has no keys: drop the {role} key")
        return _open_tiff(path)
    if suffix in ZARR_SUFFIXES or (path.is_dir() and _looks_like_zarr(path)):
        return _open_zarr(path, key, role)
    raise InputError(
        f"cannot read {path}: use HDF5 ({', '.join(HDF5_SUFFIXES)}), TIFF (.tif, .tiff) "
        "or a zarr/N5 folder (.zarr, .n5)"
    )


def _candidates(role: str) -> Sequence[str]:
    return {"raw": RAW_KEYS, "labels": LABELS_KEYS, "mask": MASK_KEYS}[role]


def _pick_key(path: Path, keys: list[str], key: str | None, role: str) -> str:
    flag = {"raw": "--raw-key", "labels": "--labels-key", "mask": "--mask-key"}[role]
    listing = ", ".join(keys) if keys else "none"
    if key is not None:
        if key.strip("/") not in keys:
            raise InputError(f"{path} has no dataset {key!r} ({flag}); its datasets: {listing}")
        return key.strip("/")
    if len(keys) == 1:
        return keys[0]
    for candidate in _candidates(role):
        if candidate in keys:
            return candidate
    raise InputError(
        f"cannot tell which dataset of {path} holds the {role}: pass {flag} (one of {listing})"
    )


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    values = [float(v) for v in np.atleast_1d(np.asarray(value))]
    if any(v != int(v) for v in values):
        raise InputError(
            f"stored voxel size or offset {values} is not whole nm: pass --voxel-size/--offset"
        )
    return tuple(int(v) for v in values)


def _metadata(attrs: Any) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    voxel = attrs.get("resolution", attrs.get("voxel_size"))
    offset = attrs.get("offset")
    return _int_tuple(voxel), _int_tuple(offset)


def _open_hdf5(path: Path, key: str | None, role: str) -> Source:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot open {path} as HDF5: {exc}") from None
    keys: list[str] = []
    handle.visititems(
        lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None
    )
    try:
        chosen = _pick_key(path, keys, key, role)
    except InputError:
        handle.close()
        raise
    dataset = handle[chosen]
    voxel, offset = _metadata(dataset.attrs)
    return Source(path, chosen, dataset, voxel, offset, handle)


def _open_tiff(path: Path) -> Source:
    import tifffile
    import zarr

    try:
        store = tifffile.imread(path, aszarr=True)
    except Exception as exc:  # tifffile raises many types for a corrupt file
        raise InputError(f"cannot read {path} as TIFF: {exc}") from None
    array = zarr.open(store, mode="r")
    if isinstance(array, zarr.hierarchy.Group):  # a pyramid: level 0 is full resolution
        array = array[0]
    return Source(path, None, array, None, None, store)


def _looks_like_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in (".zgroup", ".zarray", "attributes.json"))


def _open_zarr(path: Path, key: str | None, role: str) -> Source:
    import zarr

    with warnings.catch_warnings():
        # zarr 2 warns that N5Store moves to another package in zarr 3; it works in 2.18.
        warnings.simplefilter("ignore", FutureWarning)
        store = zarr.N5Store(str(path)) if path.suffix.lower() == ".n5" else str(path)
    try:
        root = zarr.open(store, mode="r")
    except Exception as exc:  # zarr raises several error types for a bad container
        raise InputError(f"cannot open {path} as zarr/N5: {exc}") from None
    if isinstance(root, zarr.Array):
        if key:
            raise InputError(f"{path} is a single array, which has no keys: drop the {role} key")
        array = root
        chosen = None
    else:
        keys: list[str] = []
        root.visititems(
            lambda name, obj: keys.append(name) if isinstance(obj, zarr.Array) else None
        )
        chosen = _pick_key(path, keys, key, role)
        array = root[chosen]
    voxel, offset = _metadata(array.attrs)
    if path.suffix.lower() == ".n5" and voxel is not None:
        # N5 stores metadata x first.
        voxel = voxel[::-1]
        offset = offset[::-1] if offset is not None else None
    return Source(path, chosen, array, voxel, offset)
