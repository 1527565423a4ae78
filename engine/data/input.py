"""The network's input convention, on its own: blockwise workers need it without gunpowder."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import InputError

# The raw intensities the network sees: uint8 scaled to [0, 1] (where the intensity
# augmentation works), then mapped to [-1, 1].
_RAW_SCALE = 1.0 / 255.0
_INPUT_SCALE = 2.0
_INPUT_SHIFT = -1.0


def normalize_raw(raw_uint8: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Raw intensities as the network takes them: float32 in [-1, 1].

    The training pipeline applies the same transform (with intensity augmentation
    between the two steps): uint8 / 255, then ``* 2 - 1``. With `method` "none"
    (`preprocess.normalize = "none"`) the values pass unchanged, as float32.
    """
    raw = np.asarray(raw_uint8)
    if method == "none":
        return raw.astype(np.float32)
    if method != "minmax":
        raise InputError(f"unknown raw normalization {method!r}: use 'minmax' or 'none'")
    if raw.dtype != np.uint8:
        raise InputError(f"normalize_raw expects uint8 raw, got {raw.dtype}")
    out = raw.astype(np.float32)
    out *= np.float32(_RAW_SCALE * _INPUT_SCALE)
    out += np.float32(_INPUT_SHIFT)
    return out


def normalize_raw_tensor(raw: Any, method: str = "minmax") -> Any:
    """`normalize_raw` for a torch tensor, on its device, with the same float32 operations
    (so the same values): prediction sends uint8 to the GPU and normalises there."""
    import torch

    if method == "none":
        return raw.to(torch.float32)
    if method != "minmax":
        raise InputError(f"unknown raw normalization {method!r}: use 'minmax' or 'none'")
    if raw.dtype != torch.uint8:
        raise InputError(f"normalize_raw_tensor expects uint8 raw, got {raw.dtype}")
    out = raw.to(torch.float32)
    out *= float(np.float32(_RAW_SCALE * _INPUT_SCALE))
    out += float(np.float32(_INPUT_SHIFT))
    return out
