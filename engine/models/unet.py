"""A valid-convolution UNet for 2D and 3D volumes (the network of the LSD paper).

Shapes: the network takes `(batch, in_channels, *spatial)` and returns
`(batch, num_fmaps, *output_spatial)` per head, where `output_spatial` is exactly
`engine.geometry.UNetGeometry.output_shape(spatial)`. The torch code below does its own
shape arithmetic (it does not call the geometry module while running) so that the test
comparing the two checks one against the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from engine.errors import InputError
from engine.geometry import GeometryError, Shape, UNetGeometry

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing `len(shape)` axes of `x` to `shape`, centered.

    Where the difference is odd the extra voxel goes off the high end, the same rule as
    the geometry module's, so that crops line up across block sizes.
    """
    dims = len(shape)
    spatial = x.shape[-dims:]
    if any(t > s for t, s in zip(shape, spatial, strict=True)):
        raise InputError(f"cannot crop a tensor of shape {list(spatial)} to {list(shape)}")
    slices: tuple[slice, ...] = tuple(
        slice((s - t) // 2, (s - t) // 2 + t) for s, t in zip(spatial, shape, strict=True)
    )
    return x[(..., *slices)]


class ConvPass(nn.Sequential):
    """Valid convolutions, each followed by a ReLU: `in_channels` → `out_channels`."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_sizes: Sequence[Sequence[int]]
    ) -> None:
        layers: list[nn.Module] = []
        self.kernel_sizes = tuple(tuple(k) for k in kernel_sizes)
        dims = len(self.kernel_sizes[0])
        for kernel in self.kernel_sizes:
            layers.append(_CONV[dims](in_channels, out_channels, kernel))
            layers.append(nn.ReLU())
            in_channels = out_channels
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Check before torch does, so that a too-small input is an InputError naming
        # the cause rather than a RuntimeError from deep inside a convolution.
        dims = len(self.kernel_sizes[0])
        spatial = x.shape[-dims:]
        reach = [sum(k[d] - 1 for k in self.kernel_sizes) for d in range(dims)]
        if any(s - r < 1 for s, r in zip(spatial, reach, strict=True)):
            raise InputError(
                f"the input is too small: {list(spatial)} voxels cannot pass convolutions "
                f"{[list(k) for k in self.kernel_sizes]}"
            )
        return super().forward(x)


class Upsample(nn.Module):
    """Upsampling by an integer factor: nearest (constant) or a learned transposed conv."""

    def __init__(self, factor: Sequence[int], channels: int, constant: bool) -> None:
        super().__init__()
        self.factor = tuple(factor)
        dims = len(self.factor)
        self.up: nn.Module
        if constant:
            self.up = nn.Upsample(scale_factor=tuple(float(f) for f in self.factor), mode="nearest")
        else:
            self.up = _CONV_TRANSPOSED[dims](
                channels, channels, kernel_size=self.factor, stride=self.factor
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def _factor_crop_shape(
    shape: Sequence[int], factor: Sequence[int], kernels: Sequence[Sequence[int]]
) -> Shape:
    # The largest size s' <= s for which s' - (conv reach) is a multiple of `factor`: the
    # next convolutions then leave a size that the coarser levels could have produced
    # from any block offset that is a multiple of the factor.
    target: list[int] = []
    for d, (size, f) in enumerate(zip(shape, factor, strict=True)):
        reach = sum(k[d] - 1 for k in kernels)
        target.append(((size - reach) // f) * f + reach)
    return tuple(target)


class UNet(nn.Module):
    """A UNet with valid convolutions, in 2D or 3D (from the arity of the kernels).

    Per level on the way down: the convolutions of `kernel_size_down[level]` (each with a
    ReLU), then max-pooling by `downsample_factors[level]`; the deepest level only
    convolves. Level `l` has `num_fmaps * fmap_inc_factor**l` feature maps. On the way up:
    upsampling by the level's factor (nearest if `constant_upsample`, else a transposed
    convolution), with `crop_to_factor` a crop so that what is left after the level's
    convolutions is a multiple of the product of the remaining factors (this makes
    blockwise predictions seamless), the center-cropped skip features concatenated, then
    the convolutions of `kernel_size_up[level]`.

    `num_heads > 1` gives separate up-paths that share the down-path; `forward` then
    returns a list of `num_heads` tensors, otherwise one tensor, each with `num_fmaps`
    channels. An input shape that does not fit raises InputError; `output_shape` gives
    the output shape without running the network.
    """

    def __init__(
        self,
        in_channels: int,
        num_fmaps: int,
        fmap_inc_factor: int,
        downsample_factors: Sequence[Sequence[int]],
        kernel_size_down: Sequence[Sequence[Sequence[int]]],
        kernel_size_up: Sequence[Sequence[Sequence[int]]],
        constant_upsample: bool = True,
        crop_to_factor: bool = True,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_fmaps < 1 or fmap_inc_factor < 1 or num_heads < 1:
            raise InputError(
                "UNet needs in_channels, num_fmaps, fmap_inc_factor and num_heads >= 1, got "
                f"{in_channels}, {num_fmaps}, {fmap_inc_factor}, {num_heads}"
            )
        self.geometry = UNetGeometry.create(
            downsample_factors, kernel_size_down, kernel_size_up, crop_to_factor
        )
        if not kernel_size_down or not kernel_size_down[0]:
            raise InputError("UNet needs kernel_size_down with at least one kernel")
        self.dims = len(self.geometry.kernel_size_down[0][0])
        if self.dims not in _CONV:
            raise InputError(f"UNet supports 2 or 3 spatial dimensions, got {self.dims}")
        try:
            self.geometry.check_layout(self.dims)
        except GeometryError as exc:
            raise InputError(f"UNet geometry: {exc}") from exc

        self.in_channels = in_channels
        self.out_channels = num_fmaps
        self.num_heads = num_heads
        self.crop_to_factor = crop_to_factor
        levels = self.geometry.num_levels
        fmaps = [num_fmaps * fmap_inc_factor**level for level in range(levels)]
        self.crop_factors = self.geometry.crop_factors()

        self.down = nn.ModuleList(
            ConvPass(
                in_channels if level == 0 else fmaps[level - 1],
                fmaps[level],
                self.geometry.kernel_size_down[level],
            )
            for level in range(levels)
        )
        self.pool = nn.ModuleList(
            _MAX_POOL[self.dims](factor, stride=factor)
            for factor in self.geometry.downsample_factors
        )
        # Up-path modules are indexed [head][level], level 0 being the finest.
        self.upsample = nn.ModuleList(
            nn.ModuleList(
                Upsample(
                    self.geometry.downsample_factors[level], fmaps[level + 1], constant_upsample
                )
                for level in range(levels - 1)
            )
            for _ in range(num_heads)
        )
        self.up = nn.ModuleList(
            nn.ModuleList(
                ConvPass(
                    fmaps[level] + fmaps[level + 1],
                    fmaps[level],
                    self.geometry.kernel_size_up[level],
                )
                for level in range(levels - 1)
            )
            for _ in range(num_heads)
        )

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """The spatial output shape for `input_shape`; InputError if it does not fit."""
        try:
            return self.geometry.output_shape(input_shape)
        except GeometryError as exc:
            raise InputError(_shape_message(self.geometry, input_shape, exc)) from exc

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() != self.dims + 2:
            raise InputError(
                f"UNet expects (batch, channels, {self.dims} spatial axes), got shape "
                f"{list(x.shape)}"
            )
        skips: list[torch.Tensor] = []
        for level, pool in enumerate(self.pool):
            x = self.down[level](x)
            factor = self.geometry.downsample_factors[level]
            spatial = x.shape[-self.dims :]
            if any(s % f for s, f in zip(spatial, factor, strict=True)):
                raise InputError(
                    f"at level {level} the shape {list(spatial)} is not divisible by the "
                    f"downsample factor {list(factor)}"
                )
            skips.append(x)
            x = pool(x)
        bottom = self.down[-1](x)

        outputs = [self._up_path(head, bottom, skips) for head in range(self.num_heads)]
        return outputs[0] if self.num_heads == 1 else outputs

    def _up_path(self, head: int, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for level in reversed(range(len(skips))):
            x = self.upsample[head][level](x)
            kernels = self.geometry.kernel_size_up[level]
            if self.crop_to_factor:
                target = _factor_crop_shape(
                    x.shape[-self.dims :], self.crop_factors[level], kernels
                )
                if min(target) < 1:
                    raise InputError(f"the input is too small: nothing is left at level {level}")
                x = center_crop(x, target)
            skip = skips[level]
            spatial = zip(x.shape[-self.dims :], skip.shape[-self.dims :], strict=True)
            if any(u > s for u, s in spatial):
                raise InputError(
                    f"at level {level} the skip connection is smaller than the upsampled path"
                )
            x = self.up[head][level](torch.cat([center_crop(skip, x.shape[-self.dims :]), x], 1))
        return x


def _shape_message(geometry: UNetGeometry, input_shape: Sequence[int], exc: Exception) -> str:
    near = geometry.valid_input_shapes_near(input_shape)
    hint = f"; valid input shapes nearby: {[list(s) for s in near]}" if near else ""
    return f"input shape {list(input_shape)} does not fit the UNet: {exc}{hint}"
