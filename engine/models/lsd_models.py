"""The networks of the LSD paper: UNets with sigmoid heads for LSDs and/or affinities.

Model types (declared in `engine.models.registry`, whose `network` names one of the
builders at the end of this module), all taking raw of shape `(batch, 1, *spatial)`:

- `MTLSD`: one UNet with two up-paths; returns `(lsds, affs)`, both of the same shape.
- `LSD`: returns `lsds`.
- `AFF`: returns `affs`.
- `ACLSD`: auto-context; stage 1 (raw → lsds), stage 2 (lsds → affs); returns
  `(lsds, affs)`, the affinities smaller than the LSDs.
- `ACRLSD`: as ACLSD, with stage 2 seeing the LSDs and the raw center-cropped to them.

LSDs have 10 channels in 3D and 6 in 2D, affinities `num_affinities`; all outputs are
in [0, 1]. Every model names its outputs in `output_names` (in forward's order) and
gives their spatial shapes for an input shape, without running, through
`output_shapes(input_shape)`; `output_shape(input_shape)` is the final output's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from engine.errors import InputError
from engine.geometry import (
    GeometryError,
    Shape,
    largest_input_within,
    two_stage_input_shape_for_output,
)
from engine.models.registry import MODEL_TYPE_NAMES, ModelTypeSpec, model_type_spec
from engine.models.registry import MODEL_TYPES as REGISTRY
from engine.models.unet import UNet, center_crop

logger = logging.getLogger(__name__)

MODEL_TYPES: tuple[str, ...] = MODEL_TYPE_NAMES
AUTO_CONTEXT_TYPES: tuple[str, ...] = tuple(
    name for name, spec in REGISTRY.items() if spec.auto_context
)


def num_lsd_channels(dims: int) -> int:
    """The number of LSD channels for `dims` spatial axes (10 in 3D, 6 in 2D)."""
    if dims == 3:
        return 10
    if dims == 2:
        return 6
    raise InputError(f"LSDs exist for 2 or 3 spatial dimensions, got {dims}")


class SigmoidHead(nn.Sequential):
    """A 1×1(×1) convolution to `out_channels`, then a sigmoid (outputs in [0, 1])."""

    def __init__(self, in_channels: int, out_channels: int, dims: int) -> None:
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        super().__init__(conv(in_channels, out_channels, 1), nn.Sigmoid())


class LsdNetwork(nn.Module):
    """Base of the models here: `output_names`, `output_shapes` and `output_shape`."""

    model_type: str
    output_names: tuple[str, ...]

    def output_shapes(self, input_shape: Sequence[int]) -> dict[str, Shape]:
        """Spatial shape of each output (keyed by `output_names`) for `input_shape`.

        Raises InputError, naming nearby valid input shapes, if the input does not fit.
        """
        raise NotImplementedError

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """Spatial shape of the last output (the affinities where there are any)."""
        return self.output_shapes(input_shape)[self.output_names[-1]]


class SingleTaskModel(LsdNetwork):
    """A UNet and one sigmoid head: `forward(raw) -> Tensor` (LSD, AFF, and the stages)."""

    def __init__(self, model_type: str, output_name: str, unet: UNet, out_channels: int) -> None:
        super().__init__()
        self.model_type = model_type
        self.output_names = (output_name,)
        self.unet = unet
        self.head = SigmoidHead(unet.out_channels, out_channels, unet.dims)
        self.in_channels = unet.in_channels
        self.out_channels = out_channels

    def output_shapes(self, input_shape: Sequence[int]) -> dict[str, Shape]:
        return {self.output_names[0]: self.unet.output_shape(input_shape)}

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        # One head: the UNet returns a single tensor.
        return self.head(cast(torch.Tensor, self.unet(raw)))


class MultiTaskModel(LsdNetwork):
    """MTLSD: a two-headed UNet; `forward(raw) -> (lsds, affs)`, of the same shape."""

    def __init__(self, unet: UNet, num_lsds: int, num_affinities: int) -> None:
        super().__init__()
        if unet.num_heads != 2:
            raise InputError(f"MTLSD needs a UNet with 2 heads, got {unet.num_heads}")
        self.model_type = "MTLSD"
        self.output_names = ("lsds", "affs")
        self.unet = unet
        self.lsd_head = SigmoidHead(unet.out_channels, num_lsds, unet.dims)
        self.aff_head = SigmoidHead(unet.out_channels, num_affinities, unet.dims)

    def output_shapes(self, input_shape: Sequence[int]) -> dict[str, Shape]:
        shape = self.unet.output_shape(input_shape)
        return {"lsds": shape, "affs": shape}

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lsd_features, aff_features = self.unet(raw)
        return self.lsd_head(lsd_features), self.aff_head(aff_features)


class AutoContextModel(LsdNetwork):
    """ACLSD/ACRLSD: `stage1` (raw → lsds), then `stage2` (lsds [+ raw] → affs).

    `forward(raw) -> (lsds, affs)`: stage 1's LSDs in full, and the affinities that
    stage 2 predicts from them, center-cropped first to the largest input stage 2 accepts
    (`engine.geometry.stage2_input_shape`); with `include_raw` the raw, center-cropped to
    the same shape, is concatenated after the LSD channels.

    Stage-2 training: `freeze_stage1()` stops gradients into stage 1, runs it without
    autograd and keeps it in eval mode; load its weights through `stage1` first.
    """

    def __init__(
        self,
        stage1: SingleTaskModel,
        stage2: SingleTaskModel,
        include_raw: bool,
        model_type: str,
    ) -> None:
        super().__init__()
        expected = stage1.out_channels + (stage1.in_channels if include_raw else 0)
        if stage2.in_channels != expected:
            raise InputError(
                f"stage 2 takes {stage2.in_channels} channels, stage 1 gives {expected}"
            )
        self.model_type = model_type
        self.output_names = stage1.output_names + stage2.output_names
        self.stage1 = stage1
        self.stage2 = stage2
        self.include_raw = include_raw
        self.stage1_frozen = False

    def freeze_stage1(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) stage 1 for training stage 2 alone."""
        self.stage1_frozen = frozen
        for parameter in self.stage1.parameters():
            parameter.requires_grad_(not frozen)
        self.stage1.train(self.training and not frozen)

    def train(self, mode: bool = True) -> AutoContextModel:
        super().train(mode)
        if self.stage1_frozen:
            self.stage1.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters that receive gradients (all of stage 2's when stage 1 is frozen)."""
        return (p for p in self.parameters() if p.requires_grad)

    def _stage2_input_shape(self, input_shape: Sequence[int]) -> Shape:
        lsd_shape = self.stage1.output_shape(input_shape)
        try:
            return largest_input_within(self.stage2.unet.geometry, lsd_shape)
        except GeometryError as exc:
            smallest = two_stage_input_shape_for_output(
                self.stage1.unet.geometry, self.stage2.unet.geometry, [1] * len(lsd_shape)
            )
            raise InputError(
                f"input shape {list(input_shape)}: stage 1's output {list(lsd_shape)} is too "
                f"small for stage 2 ({exc}); the smallest input of this {self.model_type} "
                f"model is {list(smallest)}"
            ) from exc

    def output_shapes(self, input_shape: Sequence[int]) -> dict[str, Shape]:
        stage2_input = self._stage2_input_shape(input_shape)
        return {
            **self.stage1.output_shapes(input_shape),
            **self.stage2.output_shapes(stage2_input),
        }

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stage1_frozen:
            with torch.no_grad():
                lsds = self.stage1(raw)
        else:
            lsds = self.stage1(raw)
        dims = self.stage1.unet.dims
        # Shape arithmetic only: cheap, and it keeps forward and output_shapes in step.
        stage2_input = self._stage2_input_shape(tuple(raw.shape[-dims:]))
        context = center_crop(lsds, stage2_input)
        if self.include_raw:
            context = torch.cat([context, center_crop(raw, stage2_input)], 1)
        return lsds, self.stage2(context)


def _unet(model: Any, in_channels: int, num_heads: int) -> UNet:
    return UNet(
        in_channels=in_channels,
        num_fmaps=model.num_fmaps,
        fmap_inc_factor=model.fmap_inc_factor,
        downsample_factors=model.downsample_factors,
        kernel_size_down=model.kernel_size_down,
        kernel_size_up=model.kernel_size_up,
        constant_upsample=model.constant_upsample,
        crop_to_factor=model.crop_to_factor,
        num_heads=num_heads,
    )


def build_model(model_type: str, model: Any, dims: int, num_affinities: int) -> LsdNetwork:
    """Build the network of `model_type` (one of MODEL_TYPES) from a model config.

    `model` has `num_fmaps, fmap_inc_factor, downsample_factors, kernel_size_down,
    kernel_size_up, constant_upsample, crop_to_factor, input_shape` (ModelConfig). Both
    stages of an auto-context model use that same UNet layout. The config's input shape
    is checked against the network; it is the input of the whole model (stage 1 for the
    auto-context models). Raises InputError for an unknown type, a layout that does not
    have `dims` axes, or an input shape that does not fit.
    """
    spec = model_type_spec(model_type)
    if num_affinities < 1:
        raise InputError(f"num_affinities must be at least 1, got {num_affinities}")
    channels = {"lsds": num_lsd_channels(dims), "affs": num_affinities}
    kernel_dims = {len(k) for level in model.kernel_size_down for k in level}
    if kernel_dims != {dims}:
        raise InputError(
            f"a {dims}D model needs {dims}-value kernels, got kernel_size_down "
            f"{model.kernel_size_down}"
        )
    if len(model.input_shape) != dims:
        raise InputError(
            f"a {dims}D model needs a {dims}-value input_shape, got {list(model.input_shape)}"
        )
    network: LsdNetwork = spec.build_network(model, channels)
    shapes = network.output_shapes(model.input_shape)
    logger.debug("built %s: input %s -> %s", spec.name, list(model.input_shape), shapes)
    return network


# ---- the builders the registry names (`ModelTypeSpec.network`) -----------------------------
# Each takes the type's declaration, the model config and the channels of each output
# ("lsds", "affs"), and returns a network whose `output_names` are the declared outputs.


def single_task_network(
    spec: ModelTypeSpec, model: Any, channels: dict[str, int], in_channels: int = 1
) -> SingleTaskModel:
    """One UNet and one head, for a type with a single output (LSD, AFF)."""
    (output,) = spec.outputs
    return SingleTaskModel(spec.name, output, _unet(model, in_channels, 1), channels[output])


def multitask_network(spec: ModelTypeSpec, model: Any, channels: dict[str, int]) -> MultiTaskModel:
    """One UNet with an up-path and a head per output (MTLSD: lsds, then affs)."""
    if spec.outputs != ("lsds", "affs"):
        raise InputError(f"{spec.name}: the multitask network predicts lsds, then affs")
    return MultiTaskModel(_unet(model, 1, num_heads=2), channels["lsds"], channels["affs"])


def auto_context_network(
    spec: ModelTypeSpec, model: Any, channels: dict[str, int]
) -> AutoContextModel:
    """Stage one, the network of `spec.stage1`'s type, on the raw; stage two, the network
    of `spec.stage2`'s type, on stage one's outputs (and the raw with `spec.stage2_raw`)."""
    if spec.stage1 is None or spec.stage2 is None:
        raise InputError(f"{spec.name} is no auto-context model type: it names no stages")
    stage1_spec, stage2_spec = model_type_spec(spec.stage1), model_type_spec(spec.stage2)
    stage1 = single_task_network(stage1_spec, model, channels)
    stage2_in = sum(channels[o] for o in stage1_spec.outputs) + (1 if spec.stage2_raw else 0)
    stage2 = single_task_network(stage2_spec, model, channels, in_channels=stage2_in)
    return AutoContextModel(stage1, stage2, spec.stage2_raw, spec.name)
