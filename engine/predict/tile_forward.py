"""A model's forward pass over a batch of tiles: raw in, uint8 predictions out.

Everything between the raw tiles and the uint8 outputs happens on the model's device:
normalisation, the forward (under autocast in the chosen precision), the crop of each
output to the output shape, and the quantisation to uint8, so only uint8 crosses the
bus each way (a quarter of float32's bytes) and the host does no arithmetic.

`submit` only queues the work on a GPU: the caller can hand over the next batch while
this one runs, and takes the outputs with `result()` (engine.predict.tile_batcher keeps one
batch queued behind the running one, so the device never waits for the host between
two). On the CPU `submit` computes everything before it returns.

Batches always hold exactly `batch` tiles, a short batch padded with zeros, and torch
computes each sample of a batch independently of the others: a tile's output does not
depend on how tiles were grouped, so it does not depend on the batch size, the number of
workers or the order blocks arrive in. On the CPU a batch holds at least two tiles:
for one sample torch runs small 3D convolutions through another implementation
(`slow_conv3d` instead of oneDNN), five times slower here and rounded differently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from engine.data.input import normalize_raw_tensor
from engine.errors import InputError

PRECISIONS = ("bf16", "fp16", "fp32")


def resolve_precision(setting: str, device: Any) -> str:
    """`predict.precision` for `device`: "auto" is bf16 on a CUDA GPU that supports it
    (Ampere and newer), fp16 on older GPUs, fp32 on the CPU."""
    if setting != "auto":
        if setting not in PRECISIONS:
            raise InputError(f"unknown precision {setting!r}: use auto, bf16, fp16 or fp32")
        return setting
    if getattr(device, "type", str(device)) != "cuda":
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to `precision` on `device` (a no-op for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def batch_for(batch_size: int, device: Any) -> int:
    """The number of tiles in every forward pass on `device` (see the module docstring)."""
    return max(batch_size, 2) if getattr(device, "type", str(device)) == "cpu" else batch_size


class TileForward:
    """Calls `model` on batches of raw tiles; returns each tile's uint8 outputs.

    `outputs` maps the model's output names (`model.output_names`) to the keys the
    caller wants them under; other outputs are dropped on the device. Not thread-safe:
    one thread calls it (engine.predict.tile_batcher gathers tiles from several).
    """

    def __init__(
        self,
        model: Any,
        device: Any,
        *,
        outputs: Mapping[str, str],
        input_shape: Sequence[int],
        output_shape: Sequence[int],
        batch_size: int,
        precision: str,
        normalize: str,
    ) -> None:
        self.model = model
        self.device = device
        self.outputs = dict(outputs)
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.batch = batch_for(batch_size, device)
        self.precision = resolve_precision(precision, device)
        self.normalize = normalize

    def __call__(self, tiles: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Outputs of up to `self.batch` tiles (each of `input_shape`), in their order."""
        return self.submit(tiles).result()

    def submit(self, tiles: Sequence[np.ndarray]) -> PendingBatch:
        """Start the forward of up to `self.batch` tiles; the outputs come from the
        returned batch's `result()`. The tiles may be reused once this returns."""
        import torch

        if not 0 < len(tiles) <= self.batch:
            raise ValueError(f"{len(tiles)} tiles for a batch of {self.batch}")
        cuda = self.device.type == "cuda"
        with torch.inference_mode():
            staged = self._stage(tiles)
            x = normalize_raw_tensor(staged.to(self.device, non_blocking=True), self.normalize)
            with autocast(self.device, self.precision), self._same_kernels_any_threads():
                predicted = self.model(x)
            if not isinstance(predicted, tuple):
                predicted = (predicted,)
            host = {}
            for name, value in zip(self.model.output_names, predicted):
                if name not in self.outputs:
                    continue
                quantised = _quantise(_center_crop(value, self.output_shape))
                if cuda:
                    # Into pinned memory, so that the copy is queued behind the forward
                    # instead of waiting for it here.
                    target = torch.empty(quantised.shape, dtype=torch.uint8, pin_memory=True)
                    host[self.outputs[name]] = target.copy_(quantised, non_blocking=True)
                else:
                    host[self.outputs[name]] = quantised
            done = None
            if cuda:
                done = torch.cuda.Event()
                done.record()
        # The staged tiles live as long as the batch: their copy to the device is done
        # when its outputs are (torch's pinned cache would also wait for the copy before
        # handing the buffer out again; this does not depend on it).
        return PendingBatch(host, len(tiles), done, staged)

    @contextlib.contextmanager
    def _same_kernels_any_threads(self) -> Iterator[None]:
        """On the CPU, convolutions with a kernel of 1 (the heads) run without oneDNN, on
        one thread: torch picks oneDNN for them only with more than one thread, and the
        two round differently, so workers with different thread counts (1 of 2 workers,
        or the whole machine's cores in one process) would disagree in the last bit.
        Hooked only for the call: the model may be a training run's."""
        import torch

        if self.device.type != "cpu":
            yield
            return
        threads: list[int] = []
        enabled = torch.backends.mkldnn.enabled

        def before(module: Any, args: Any) -> None:
            torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
            threads.append(torch.get_num_threads())
            torch.set_num_threads(1)

        def after(module: Any, args: Any, output: Any) -> None:
            torch.backends.mkldnn.enabled = enabled
            torch.set_num_threads(threads.pop())

        hooks = []
        for module in self.model.modules():
            if isinstance(module, torch.nn.modules.conv._ConvNd) and all(
                k == 1 for k in module.kernel_size
            ):
                hooks += [
                    module.register_forward_pre_hook(before),
                    module.register_forward_hook(after),
                ]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            torch.backends.mkldnn.enabled = enabled

    def _stage(self, tiles: Sequence[np.ndarray]) -> Any:
        """The batch as one host tensor (pinned for a GPU), zeros after the tiles."""
        import torch

        shape = (self.batch, 1, *self.input_shape)
        dtype = torch.from_numpy(np.empty(0, tiles[0].dtype)).dtype
        # Pinned memory copies to the GPU asynchronously. A new buffer every batch, as
        # the last one may still be on its way (the batch keeps it until its outputs
        # are back).
        staging = torch.empty(shape, dtype=dtype, pin_memory=self.device.type == "cuda")
        host = staging.numpy()
        for i, tile in enumerate(tiles):
            host[i, 0] = tile
        host[len(tiles) :] = 0
        return staging


class PendingBatch:
    """A submitted batch; `result()` waits for its outputs (once) and splits them by tile."""

    def __init__(self, host: dict[str, Any], tiles: int, done: Any, staged: Any) -> None:
        self._host = host
        self._tiles = tiles
        self._done = done
        self._staged: Any = staged

    def ready(self) -> bool:
        """Whether `result()` would return without waiting for the device."""
        return self._done is None or bool(self._done.query())

    def result(self) -> list[dict[str, np.ndarray]]:
        if self._done is not None:
            self._done.synchronize()
        self._staged = None
        arrays = {key: value.numpy() for key, value in self._host.items()}
        return [{key: array[i] for key, array in arrays.items()} for i in range(self._tiles)]


def _center_crop(value: Any, shape: Sequence[int]) -> Any:
    """Batch-and-channels-first `value` cropped to `shape` around its center (the
    stage-1 LSDs of ACLSD come out larger than the affinities)."""
    spatial = value.shape[2:]
    starts = [(s - t) // 2 for s, t in zip(spatial, shape)]
    return value[(slice(None), slice(None), *(slice(a, a + t) for a, t in zip(starts, shape)))]


def _quantise(value: Any) -> Any:
    """[0, 1] to uint8, rounding half to even as numpy's rint does."""
    import torch

    return value.float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
