"""The machine's NVIDIA GPUs through pynvml (nvidia-ml-py): what exists and how busy it is.

Without the NVIDIA driver library (NVMLError_LibraryNotFound) there are no GPUs: the
report says so and why, and the scheduler runs everything that may run on the CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

NO_LIBRARY = "none found (NVIDIA driver library not loaded)"
# How long the list of GPU indices is trusted before NVML is asked again.
_INVENTORY_TTL_S = 10.0


@dataclass(frozen=True)
class GpuProcessState:
    pid: int
    used_memory_mb: float | None


@dataclass(frozen=True)
class GpuState:
    index: int
    name: str
    memory_total_mb: float
    memory_used_mb: float
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    processes: list[GpuProcessState] = field(default_factory=list)


@dataclass(frozen=True)
class GpuScan:
    available: bool
    reason: str | None
    gpus: list[GpuState]


class Gpus:
    """NVML, initialised once; `indices()` is cached, `scan()` is live."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._failure: str | None = None
        self._inventory: tuple[float, list[int], str | None] | None = None

    def _init(self) -> Any:
        if self._nvml is not None:
            return self._nvml
        try:
            import pynvml
        except ImportError:
            self._failure = "none found (pynvml is not installed)"
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            self._failure = NO_LIBRARY
            return None
        except pynvml.NVMLError as exc:
            self._failure = f"none found (NVML failed: {exc})"
            return None
        self._nvml = pynvml
        self._failure = None
        return pynvml

    def scan(self) -> GpuScan:
        nvml = self._init()
        if nvml is None:
            return GpuScan(False, self._failure, [])
        try:
            count = nvml.nvmlDeviceGetCount()
            gpus = [self._device(nvml, i) for i in range(count)]
        except nvml.NVMLError as exc:
            return GpuScan(False, f"none usable (NVML failed: {exc})", [])
        if not gpus:
            return GpuScan(False, "none found (the NVIDIA driver reports no GPU)", [])
        self._inventory = (time.monotonic(), [g.index for g in gpus], None)
        return GpuScan(True, None, gpus)

    def indices(self) -> tuple[list[int], str | None]:
        """The GPU indices that exist, or none and why (cached for a few seconds)."""
        now = time.monotonic()
        if self._inventory is None or now - self._inventory[0] > _INVENTORY_TTL_S:
            nvml = self._init()
            if nvml is None:
                self._inventory = (now, [], self._failure)
            else:
                try:
                    count = nvml.nvmlDeviceGetCount()
                    reason = None if count else "none found (the NVIDIA driver reports no GPU)"
                    self._inventory = (now, list(range(count)), reason)
                except nvml.NVMLError as exc:
                    self._inventory = (now, [], f"none usable (NVML failed: {exc})")
        return self._inventory[1], self._inventory[2]

    @staticmethod
    def _device(nvml: Any, index: int) -> GpuState:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)

        def optional(fn: Any, *args: Any) -> Any:
            # Some boards do not report temperature or power: leave those out.
            try:
                return fn(handle, *args)
            except nvml.NVMLError:
                return None

        utilization = optional(nvml.nvmlDeviceGetUtilizationRates)
        power = optional(nvml.nvmlDeviceGetPowerUsage)
        temperature = optional(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)
        processes = optional(nvml.nvmlDeviceGetComputeRunningProcesses) or []
        return GpuState(
            index=index,
            name=name.decode() if isinstance(name, bytes) else str(name),
            memory_total_mb=memory.total / 2**20,
            memory_used_mb=memory.used / 2**20,
            utilization_pct=float(utilization.gpu) if utilization is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            power_w=power / 1000.0 if power is not None else None,
            processes=[
                GpuProcessState(
                    pid=int(p.pid),
                    used_memory_mb=(
                        p.usedGpuMemory / 2**20 if isinstance(p.usedGpuMemory, int) else None
                    ),
                )
                for p in processes
            ],
        )
