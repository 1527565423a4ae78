"""A stand-in for pynvml with FAKE_NVML_GPUS GPUs: the one mock in the daemon tests.

An NVIDIA GPU cannot exist on the test machines, so GPU reservation is tested against
this module, put first on the daemon's PYTHONPATH. Only what daemon.gpus calls exists,
under pynvml's own (camelCase) names.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


def nvmlInit() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return int(os.environ.get("FAKE_NVML_GPUS", "2"))


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetName(handle: int) -> str:
    return "Fake GPU 80GB"


def nvmlDeviceGetMemoryInfo(handle: int) -> Any:
    return SimpleNamespace(total=80 * 2**30, used=(handle + 1) * 2**30, free=0)


def nvmlDeviceGetUtilizationRates(handle: int) -> Any:
    return SimpleNamespace(gpu=10 * handle, memory=0)


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    return 40 + handle


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    raise NVMLError("Not Supported")


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[Any]:
    return []
