"""The arithmetic of training: `train.precision` resolved for a device.

'auto' is bf16 autocast on a CUDA GPU that supports it (Ampere and later: tensor cores
at twice the fp32 rate or more, half the activation memory, fp32's exponent range so no
loss scaling) and fp32 everywhere else. On the CPU fp32 stays the default: without AMX
(most CPUs) bf16 convolutions are emulated and slower than fp32, and CPU training is for
trying things out, not for speed. An explicit 'bf16' still autocasts on the CPU.
fp16 has fp32's speed-up on tensor cores but a narrow exponent: its gradients are
scaled (a GradScaler), and only fp16's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import InputError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is bf16, fp16 or fp32, never 'auto'."""

    name: str
    device: torch.device

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass's context: autocast to `dtype`, or nothing for fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled for fp16 only (a no-op pass-through otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """`train.precision` for `device`; InputError if the device cannot do it."""
    cuda = device.type == "cuda"
    if setting == "auto":
        return Precision("bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32", device)
    if setting not in _DTYPES:
        raise InputError(f"train.precision must be auto, bf16, fp16 or fp32, got {setting!r}")
    if setting == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise InputError(
            f"train.precision bf16: the GPU {name} has no bf16 support; set train.precision "
            "to fp16 (with loss scaling) or fp32"
        )
    return Precision(setting, device)
