"""Shape arithmetic of the valid-convolution UNet, without torch.

The config validates model shapes with these functions, so they must agree exactly with
`engine.models.unet.UNet` (a test checks both on every preset).

The UNet follows the LSD paper's network (funlib.learn.torch): two valid convolutions
per level, max-pooling by the downsample factors, nearest upsampling, and skip
connections center-cropped to the upsampled path. With `crop_to_factor`, the upsampled
features are also cropped so that the size left after the next convolutions is a
multiple of the product of the remaining downsample factors; this keeps predictions
translation-equivariant across blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Shape = tuple[int, ...]


class GeometryError(ValueError):
    """An input shape that the UNet cannot process (raised with the reason)."""


@dataclass(frozen=True)
class UNetGeometry:
    """The layout of a valid-convolution UNet: what decides its input→output shape."""

    downsample_factors: tuple[Shape, ...]
    kernel_size_down: tuple[tuple[Shape, ...], ...]
    kernel_size_up: tuple[tuple[Shape, ...], ...]
    crop_to_factor: bool = True

    @classmethod
    def create(
        cls,
        downsample_factors: Sequence[Sequence[int]],
        kernel_size_down: Sequence[Sequence[Sequence[int]]],
        kernel_size_up: Sequence[Sequence[Sequence[int]]],
        crop_to_factor: bool = True,
    ) -> UNetGeometry:
        return cls(
            tuple(tuple(f) for f in downsample_factors),
            tuple(tuple(tuple(k) for k in level) for level in kernel_size_down),
            tuple(tuple(tuple(k) for k in level) for level in kernel_size_up),
            crop_to_factor,
        )

    @property
    def num_levels(self) -> int:
        return len(self.downsample_factors) + 1

    def check_layout(self, dims: int) -> None:
        """Raise GeometryError if the layout is inconsistent for `dims` spatial axes."""
        if len(self.kernel_size_down) != self.num_levels:
            raise GeometryError(
                f"kernel_size_down needs {self.num_levels} levels (one more than "
                f"downsample_factors), got {len(self.kernel_size_down)}"
            )
        if len(self.kernel_size_up) != self.num_levels - 1:
            raise GeometryError(
                f"kernel_size_up needs {self.num_levels - 1} levels (one per "
                f"downsample factor), got {len(self.kernel_size_up)}"
            )
        for factor in self.downsample_factors:
            if len(factor) != dims or min(factor) < 1:
                raise GeometryError(
                    f"downsample factor {list(factor)} must have {dims} positive values"
                )
        for name, levels in (
            ("kernel_size_down", self.kernel_size_down),
            ("kernel_size_up", self.kernel_size_up),
        ):
            for level in levels:
                if not level:
                    raise GeometryError(f"{name} has a level without convolutions")
                for kernel in level:
                    if len(kernel) != dims or min(kernel) < 1:
                        raise GeometryError(
                            f"{name} kernel {list(kernel)} must have {dims} positive values"
                        )

    def crop_factors(self) -> list[Shape]:
        """Per up-level i: the product of downsample factors i..end."""
        factors: list[Shape] = []
        for i in range(len(self.downsample_factors)):
            product = [1] * len(self.downsample_factors[i])
            for factor in self.downsample_factors[i:]:
                product = [p * f for p, f in zip(product, factor, strict=False)]
            factors.append(tuple(product))
        return factors

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """The output shape for `input_shape`, or GeometryError saying where it fails."""
        dims = len(input_shape)
        self.check_layout(dims)
        return self._forward(tuple(input_shape), level=0)

    def _forward(self, shape: Shape, level: int) -> Shape:
        shape = _convolve(shape, self.kernel_size_down[level], f"level {level} (down)")
        if level == self.num_levels - 1:
            return shape
        factor = self.downsample_factors[level]
        if any(s % f for s, f in zip(shape, factor, strict=False)):
            raise GeometryError(
                f"at level {level} the shape {list(shape)} is not divisible by the "
                f"downsample factor {list(factor)}"
            )
        below = self._forward(tuple(s // f for s, f in zip(shape, factor, strict=False)), level + 1)
        up = tuple(s * f for s, f in zip(below, factor, strict=False))
        kernels = self.kernel_size_up[level]
        if self.crop_to_factor:
            up = _crop_to_factor(up, self.crop_factors()[level], kernels)
        if any(u > s for u, s in zip(up, shape, strict=False)):
            raise GeometryError(
                f"at level {level} the skip connection is smaller than the upsampled path"
            )
        return _convolve(up, kernels, f"level {level} (up)")

    def context(self, input_shape: Sequence[int]) -> Shape:
        """Voxels lost on each side: (input - output) / 2 per axis."""
        output = self.output_shape(input_shape)
        return tuple((i - o) // 2 for i, o in zip(input_shape, output, strict=False))

    def valid_input_shapes_near(self, input_shape: Sequence[int], count: int = 2) -> list[Shape]:
        """Valid input shapes close to `input_shape`, axis by axis (for error messages)."""
        per_axis: list[list[int]] = []
        for axis, size in enumerate(input_shape):
            found: list[int] = []
            for delta in sorted(range(-64, 65), key=abs):
                candidate = list(input_shape)
                candidate[axis] = size + delta
                if candidate[axis] < 1:
                    continue
                # Other axes may be invalid too: test this axis on a known-valid one.
                if self._axis_valid(axis, size + delta, len(input_shape)):
                    found.append(size + delta)
                if len(found) == count:
                    break
            per_axis.append(sorted(found))
        if any(not f for f in per_axis):
            return []
        return [tuple(f[min(i, len(f) - 1)] for f in per_axis) for i in range(count)]

    def _axis_valid(self, axis: int, size: int, dims: int) -> bool:
        # Axes are independent in this arithmetic, so test one axis in a 1-axis view.
        view = UNetGeometry(
            tuple((f[axis],) for f in self.downsample_factors),
            tuple(tuple((k[axis],) for k in level) for level in self.kernel_size_down),
            tuple(tuple((k[axis],) for k in level) for level in self.kernel_size_up),
            self.crop_to_factor,
        )
        try:
            return view.output_shape((size,))[0] > 0
        except GeometryError:
            return False


def _convolve(shape: Shape, kernels: Sequence[Shape], where: str) -> Shape:
    for kernel in kernels:
        shape = tuple(s - (k - 1) for s, k in zip(shape, kernel, strict=False))
    if min(shape) < 1:
        raise GeometryError(f"the input is too small: nothing is left at {where}")
    return shape


def _crop_to_factor(shape: Shape, factor: Shape, kernels: Sequence[Shape]) -> Shape:
    conv_crop = [sum(k[d] - 1 for k in kernels) for d in range(len(shape))]
    return tuple(((s - c) // f) * f + c for s, c, f in zip(shape, conv_crop, factor, strict=False))


# --- Inverse questions: which input gives (at least) an output, and two-stage models. ---
#
# Axes are independent in this arithmetic, and among valid inputs the output grows with
# the input (by exactly the total downsample factor per period of valid sizes), so each
# axis is searched on its own, by a scan with a bound that a valid answer cannot exceed.


def _axis_view(geometry: UNetGeometry, axis: int) -> UNetGeometry:
    return UNetGeometry(
        tuple((f[axis],) for f in geometry.downsample_factors),
        tuple(tuple((k[axis],) for k in level) for level in geometry.kernel_size_down),
        tuple(tuple((k[axis],) for k in level) for level in geometry.kernel_size_up),
        geometry.crop_to_factor,
    )


def _axis_output(view: UNetGeometry, size: int) -> int | None:
    try:
        return view.output_shape((size,))[0]
    except GeometryError:
        return None


def _axis_search_span(view: UNetGeometry) -> int:
    # Input minus output is at most every kernel's reach (scaled to input voxels) plus,
    # per level, one crop of less than the total factor; one more factor reaches a valid
    # size. Twice that is a safe bound for the scan.
    total_factor = 1
    for factor in view.downsample_factors:
        total_factor *= factor[0]
    reach = 0
    scale = 1
    for level in range(view.num_levels):
        reach += scale * sum(k[0] - 1 for k in view.kernel_size_down[level])
        if level < view.num_levels - 1:
            reach += scale * sum(k[0] - 1 for k in view.kernel_size_up[level])
            scale *= view.downsample_factors[level][0]
    return 2 * (reach + (view.num_levels + 1) * total_factor) + 1


def input_shape_for_output(geometry: UNetGeometry, output_shape: Sequence[int]) -> Shape:
    """The smallest valid input shape whose output is at least `output_shape` per axis.

    Raises GeometryError if the layout is inconsistent or no such input exists.
    """
    dims = len(output_shape)
    geometry.check_layout(dims)
    result: list[int] = []
    for axis, wanted in enumerate(output_shape):
        view = _axis_view(geometry, axis)
        start = max(int(wanted), 1)
        for size in range(start, start + _axis_search_span(view)):
            out = _axis_output(view, size)
            if out is not None and out >= wanted:
                result.append(size)
                break
        else:
            raise GeometryError(f"no input gives an output of {wanted} on axis {axis}")
    return tuple(result)


def largest_input_within(geometry: UNetGeometry, shape: Sequence[int]) -> Shape:
    """The largest valid input shape not larger than `shape` on any axis.

    Raises GeometryError if even the smallest valid input does not fit.
    """
    dims = len(shape)
    geometry.check_layout(dims)
    result: list[int] = []
    for axis, limit in enumerate(shape):
        view = _axis_view(geometry, axis)
        for size in range(int(limit), 0, -1):
            if _axis_output(view, size) is not None:
                result.append(size)
                break
        else:
            smallest = input_shape_for_output(geometry, [1] * dims)
            raise GeometryError(
                f"the shape {list(shape)} is too small on axis {axis}: the smallest valid "
                f"input is {list(smallest)}"
            )
    return tuple(result)


def stage2_input_shape(
    stage1: UNetGeometry, stage2: UNetGeometry, input_shape: Sequence[int]
) -> Shape:
    """The input of stage 2 of an auto-context model whose stage 1 sees `input_shape`.

    Stage 1's output is center-cropped to the largest valid stage-2 input that fits in
    it (no crop when it is valid already). Raises GeometryError where either stage fails.
    """
    return largest_input_within(stage2, stage1.output_shape(input_shape))


def two_stage_output_shape(
    stage1: UNetGeometry, stage2: UNetGeometry, input_shape: Sequence[int]
) -> Shape:
    """The final output shape of an auto-context model (see `stage2_input_shape`)."""
    return stage2.output_shape(stage2_input_shape(stage1, stage2, input_shape))


def two_stage_input_shape_for_output(
    stage1: UNetGeometry, stage2: UNetGeometry, output_shape: Sequence[int]
) -> Shape:
    """The smallest input of an auto-context model whose output is at least `output_shape`."""
    return input_shape_for_output(stage1, input_shape_for_output(stage2, output_shape))
