"""The project configuration: typed, documented, validated; stored as `project.toml`.

Every field carries its documentation (`description`), which `project.toml` repeats as
comments and the TUI's config editor shows beside the field. Shapes are in voxels, z
first; physical sizes (voxel size, LSD sigma) are in nm.

A config is built from three layers, later ones winning: the defaults below, a dataset
preset (`engine/project/presets/NAME.toml` or a user's preset file), and the project's own
`project.toml`. Cross-field rules (arity matching the dimensionality, model shapes that a
valid-convolution UNet can produce) are checked when the whole config is assembled.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import tomlkit
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.blockwise.launchers import EXECUTORS, ExecutorName, one_of
from engine.errors import InputError
from engine.geometry import (
    GeometryError,
    UNetGeometry,
    two_stage_input_shape_for_output,
    two_stage_output_shape,
)
from engine.models.registry import MODEL_TYPE_NAMES, model_type_spec, names_of

logger = logging.getLogger(__name__)

PRESETS_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "tiny"
# Segmentation blocks span at least this much along each axis by default: fragments end
# at block faces. Three of the demo's models scored VOI 1.008, 0.981 and 0.772 with one
# 88^3 block, 1.087, 1.036 and 0.830 with 64 blocks of 28^3 (gala: 0.59 against 0.70 with
# 18^3), and a context of 28 voxels instead of 8 changed nothing. 2 um of 8 nm voxels is
# 250^3 voxels, about 1 GB a worker.
SEGMENT_BLOCK_MIN_NM = 2000

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


# The values of train.model_type are the registered model types (each one's summary is
# in engine.models.registry): an enum built from the registry keeps the JSON schema's
# enum and pydantic's error message listing them. mypy cannot read an enum built at run
# time, hence its own view, without members.
if TYPE_CHECKING:

    class ModelType(StrEnum):
        """The network heads of the LSD paper."""

else:
    ModelType = StrEnum("ModelType", {name: name for name in MODEL_TYPE_NAMES})
    ModelType.__doc__ = "The network heads of the LSD paper."


class _Section(BaseModel):
    # Unknown keys are errors so that a typo in project.toml never silently does nothing.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SystemConfig(_Section):
    """Resources of this machine."""

    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="Worker processes that prepare training batches ahead (0: in the "
        "training process; 'auto': one per CPU core this process may use, shared among "
        "the ranks of a multi-GPU run).",
    )
    cache_size: PositiveInt = Field(40, description="Batches kept ready by the training pre-cache.")
    gpus: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        description="GPU indices a run may use; empty means any free GPU, or the CPU if none.",
    )

    def batch_workers(self, ranks: int = 1) -> int:
        """Batch workers of each of `ranks` training processes: num_workers, or for
        'auto' the cores this process may run on, shared among the ranks (at least 1)."""
        if self.num_workers != "auto":
            return self.num_workers
        return max(1, len(_usable_cores()) // max(ranks, 1))


def _usable_cores() -> set[int]:
    # The affinity mask, not os.cpu_count(): a Slurm job or taskset sees only its share.
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # macOS has no affinity mask
        return set(range(os.cpu_count() or 1))


class DataConfig(_Section):
    """What the volumes are and where in each zarr container their arrays live."""

    dims: Literal[2, 3] = Field(
        3, description="Dimensionality of the model: 3 for volumes, 2 for single sections."
    )
    voxel_size: list[int] = Field(
        default_factory=lambda: [8, 8, 8],
        description="Voxel size in whole nm, z first; one value per dimension.",
    )
    raw_key: str = Field("raw", description="Dataset of the raw EM intensities (uint8).")
    labels_key: str = Field(
        "labels", description="Dataset of the neuron ids (uint64, 0 = background)."
    )
    mask_key: str = Field(
        "labels_mask", description="Dataset of the mask of labelled voxels (uint8)."
    )

    @field_validator("voxel_size")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(v <= 0 for v in value):
            raise ValueError(f"voxel sizes must be positive whole numbers of nm, got {value}")
        return value


class PreprocessConfig(_Section):
    """How raw intensities are prepared before they reach the network."""

    normalize: Literal["minmax", "none"] = Field(
        "minmax", description="Scale uint8 raw to [0,1] ('minmax') or leave it ('none')."
    )
    min_masked: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        # The LSD paper's Reject(mask=labels_mask): other locations are drawn again.
        description="Minimum fraction of labelled voxels in a training sample.",
    )


class AugmentConfig(_Section):
    """Augmentations applied to every training batch."""

    enabled: bool = Field(True, description="Turn all augmentations on or off.")
    elastic: bool = Field(True, description="Elastic deformation with rotation.")
    control_point_spacing: list[PositiveInt] = Field(
        default_factory=lambda: [4, 40, 40],
        description="Elastic grid spacing in voxels, z first.",
    )
    jitter_sigma: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.0, 2.0, 2.0],
        description="Elastic jitter in voxels, z first (0 in z keeps sections flat).",
    )
    rotation: bool = Field(True, description="Random rotation in the xy plane.")
    prob_slip: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="Probability per section of a slip (one section shifted)."
    )
    prob_shift: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="Probability per section of a shift (all sections above shifted)."
    )
    max_misalign: Annotated[int, Field(ge=0)] = Field(
        10, description="Largest misalignment in voxels (anisotropic data only)."
    )
    # Defect augmentation (gp.DefectAugment, as the LSD paper's CREMI training): serial
    # sections go missing, lose contrast, carry artifacts or fold. Anisotropic data only.
    prob_missing: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="Probability per section of a missing section (all 0; anisotropic data)."
    )
    prob_low_contrast: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="Probability per section of a low-contrast section (anisotropic data)."
    )
    prob_artifact: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0,
        description="Probability per section of an artifact pasted from train.augment.artifacts "
        "(anisotropic data).",
    )
    prob_deform: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="Probability per section of a fold (anisotropic data)."
    )
    contrast_scale: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Contrast of a low-contrast section, relative to its own."
    )
    deformation_strength: PositiveInt = Field(
        20, description="How far a fold pulls a section's contents, in voxels."
    )
    artifacts: str = Field(
        "",
        description="Zarr container with `raw` and `mask` (alpha, uint8) of artifact sections "
        "to paste, relative to the project or absolute (empty: synthetic smudges; see docs).",
    )
    simple: bool = Field(
        True, description="Random mirrors and transposes (xy only if anisotropic)."
    )
    intensity_scale: tuple[float, float] = Field(
        (0.9, 1.1), description="Range of the random intensity scale."
    )
    intensity_shift: tuple[float, float] = Field(
        (-0.1, 0.1), description="Range of the random intensity shift."
    )
    grow_boundary: Annotated[int, Field(ge=0)] = Field(
        1, description="Voxels by which label boundaries are grown (background between objects)."
    )


class TrainConfig(_Section):
    """What to train and how."""

    model_type: ModelType = Field(ModelType("MTLSD"), description=f"{names_of()} (see docs).")
    iterations: PositiveInt = Field(100_000, description="Total training iterations.")
    batch_size: PositiveInt = Field(1, description="Samples per iteration.")
    learning_rate: float = Field(0.5e-4, gt=0, lt=1, description="Adam learning rate.")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="Learning rate over the run: constant, or cosine decay to 1%."
    )
    lsd_iterations: PositiveInt | None = Field(
        None,
        description="ACLSD/ACRLSD: iterations of stage one (the LSD net) before stage two "
        "trains on its output (default: half of iterations).",
    )
    adam_betas: tuple[Fraction, Fraction] = Field(
        (0.95, 0.999), description="Adam's beta1 and beta2."
    )
    neighborhood: list[list[int]] = Field(
        default_factory=lambda: [[-1, 0, 0], [0, -1, 0], [0, 0, -1]],
        description="Affinity offsets in voxels, one per affinity channel.",
    )
    long_range: bool = Field(
        False, description="Add long-range affinities (offsets ×3 and ×9) to the neighborhood."
    )
    checkpoint_every: PositiveInt = Field(
        5000, description="Write a checkpoint every this many iterations (and at the end)."
    )
    keep_checkpoints: PositiveInt = Field(
        5,
        description="How many recent checkpoints to keep (the best on validation is kept too).",
    )
    validate_every: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Every this many iterations (and at the end), predict, segment and score "
        "the val/ volumes with the current weights: the best checkpoint and its threshold "
        "are kept for predict and segment (0: never; then predict takes the latest "
        "checkpoint and evaluate chooses the threshold on the test labels).",
    )
    stop_after: PositiveInt | None = Field(
        None,
        description="Stop early when validation has not improved for this many validation "
        "points (unset: train all iterations).",
    )
    snapshot_every: Annotated[int, Field(ge=0)] = Field(
        1000,
        description="Write raw, targets and predictions to a zarr every N iterations (0: never).",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="Arithmetic of the forward pass: bf16 or fp16 autocast (fp16 with a "
        "gradient scaler), or fp32; 'auto': bf16 on a GPU that supports it, else fp32.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (minutes of compilation at the start; falls "
        "back to eager with a warning if compilation fails).",
    )
    channels_last: bool = Field(
        False,
        description="Channels-last memory format for activations and weights (often faster "
        "convolutions on GPUs with tensor cores).",
    )
    cudnn_benchmark: bool = Field(
        True,
        description="Let cuDNN time its convolution algorithms once for the fixed training "
        "shapes and keep the fastest (CUDA only).",
    )
    seed: int | None = Field(
        None,
        description="Seed for the weights and, with system.num_workers = 0, the batches: "
        "a reproducible run (unset: a different run each time).",
    )
    tensorboard: bool = Field(False, description="Also write TensorBoard event files.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _migrate_amp(cls, data: Any) -> Any:
        """`train.amp` (before train.precision) becomes 'auto'. True meant bf16 on CUDA
        (fp16 on GPUs without bf16, which 'auto' leaves in fp32: slower, never less
        accurate); false was the default written into every project.toml, so it says
        nothing of the user's wish. `load` says so; the next save writes precision."""
        if isinstance(data, dict) and "amp" in data:
            data = dict(data)
            amp = data.pop("amp")
            if not isinstance(amp, bool):
                raise ValueError(f"amp (replaced by precision) must be true or false, got {amp!r}")
            data.setdefault("precision", "auto")
        return data

    @field_validator("neighborhood")
    @classmethod
    def _offsets(cls, value: list[list[int]]) -> list[list[int]]:
        if not value:
            raise ValueError("the neighborhood needs at least one offset")
        if len({len(o) for o in value}) != 1:
            raise ValueError("all neighborhood offsets need the same number of values")
        if any(not any(o) for o in value):
            raise ValueError("a neighborhood offset of all zeros is meaningless")
        return value


class ModelConfig(_Section):
    """The UNet: valid convolutions, so input and output shapes are tied together."""

    num_fmaps: PositiveInt = Field(12, description="Feature maps at the top level.")
    fmap_inc_factor: PositiveInt = Field(5, description="Feature maps multiply by this per level.")
    downsample_factors: list[list[PositiveInt]] = Field(
        default_factory=lambda: [[2, 2, 2], [2, 2, 2], [3, 3, 3]],
        description="Max-pooling factor between each pair of levels, z first.",
    )
    kernel_size_down: list[list[list[PositiveInt]]] = Field(
        default_factory=lambda: [[[3, 3, 3], [3, 3, 3]]] * 4,
        description="Convolution kernels of each level on the way down "
        "(one more level than factors).",
    )
    kernel_size_up: list[list[list[PositiveInt]]] = Field(
        default_factory=lambda: [[[3, 3, 3], [3, 3, 3]]] * 3,
        description="Convolution kernels of each level on the way up (one per factor).",
    )
    constant_upsample: bool = Field(
        True, description="Nearest-neighbour upsampling (True) or transposed convolutions."
    )
    crop_to_factor: bool = Field(
        True,
        description="Crop the up path to multiples of the downsampling, which keeps blockwise "
        "predictions seamless (the paper's zebrafinch net did not).",
    )
    input_shape: list[PositiveInt] = Field(
        default_factory=lambda: [196, 196, 196], description="Network input in voxels, z first."
    )
    output_shape: list[int] | None = Field(
        None,
        description="Network output in voxels; computed from input_shape when left out, "
        "checked against it when given.",
        json_schema_extra={"derived": True},
    )
    lsd_sigma: float = Field(80.0, gt=0, description="Gaussian sigma of the LSDs in nm.")
    lsd_downsample: PositiveInt = Field(
        2, description="Compute LSD targets on a grid this much coarser (faster, nearly equal)."
    )

    def geometry(self) -> UNetGeometry:
        return UNetGeometry.create(
            self.downsample_factors, self.kernel_size_down, self.kernel_size_up, self.crop_to_factor
        )


class PredictConfig(_Section):
    """Blockwise prediction with daisy."""

    block_shape: list[PositiveInt] | None = Field(
        None,
        description="Write block in voxels; a multiple of the model output (default: the output).",
    )
    context: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="Extra voxels read on each side of a block (default: from the model geometry).",
    )
    input_shape: list[PositiveInt] | None = Field(
        None,
        description="Input of one forward pass when predicting, in voxels (default: "
        "model.input_shape). The network is fully convolutional: a larger input gives an "
        "output larger by the same voxels, so less of each pass goes to context (cremi's "
        "132,268,268 writes 16% of the voxels it reads, 180,448,448 writes 35%). Must fit the "
        "UNet like model.input_shape; the error lists valid shapes nearby.",
    )
    num_workers: PositiveInt = Field(2, description="Daisy workers; each gets its own GPU if any.")
    batch_size: PositiveInt = Field(
        2,
        description="Tiles per forward pass, gathered across blocks (the result does not "
        "depend on it); on the CPU at least 2 (torch picks slower kernels for one tile).",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="Forward-pass precision: auto is bf16 on a GPU that supports it, fp32 "
        "on the CPU (bf16 outputs stay within 2/255 of fp32 on 99% of voxels).",
    )
    executor: ExecutorName = Field(
        "local",
        description=f"Where workers run: {one_of([e.summary for e in EXECUTORS.values()])}.",
    )
    retries: Annotated[int, Field(ge=0)] = Field(
        2, description="How often a failed block is retried before the run stops."
    )
    block_timeout: Annotated[int, Field(ge=0)] = Field(
        0, description="Seconds before a block counts as failed (0: no limit)."
    )
    scheduler_host: str = Field(
        "127.0.0.1",
        description="Address daisy's scheduler listens on; cluster workers connect back to it.",
    )
    cluster_gpu: bool = Field(
        True,
        description="Cluster workers ask for one GPU each (--gres=gpu:1, -gpu num=1); "
        "false for CPU-only jobs.",
    )
    partition: str = Field("", description="Slurm partition or LSF queue (empty: the default).")
    time_limit: str = Field("", description="Wall-time limit per cluster worker, e.g. '02:00:00'.")
    account: str = Field("", description="Cluster account or project to charge.")
    mask: str = Field(
        "",
        description="Mask array of each volume (e.g. labels_mask; uint8, non-zero = keep): "
        "blocks without a masked voxel are skipped, segment and evaluate stay inside it "
        "(empty: no mask).",
    )


class SegmentConfig(_Section):
    """Fragments and agglomeration."""

    fragments_method: Literal["watershed", "mutex"] = Field(
        "watershed",
        description="Seeded watershed on the boundary map (the paper) or mutex watershed.",
    )
    fragments_in_xy: bool = Field(
        False, description="Extract fragments per section (anisotropic data)."
    )
    fill_boundary: bool = Field(
        False,
        description="Grow fragments over boundary voxels too, so every voxel gets a segment "
        "(for dense ground truth without boundaries).",
    )
    min_seed_distance: PositiveInt = Field(
        10, description="Minimum distance in voxels between watershed seeds."
    )
    merge_function: Literal[
        "hist_quant_10",
        "hist_quant_25",
        "hist_quant_50",
        "hist_quant_75",
        "hist_quant_90",
        "mean",
        "max",
        "min",
    ] = Field("hist_quant_75", description="waterz merge function (the paper used hist_quant_75).")
    thresholds: list[Fraction] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        description="Agglomeration thresholds to write segmentations for, each in (0,1).",
    )
    epsilon_agglomerate: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="Merge fragments below this score before agglomeration (0: off)."
    )
    block_shape: list[PositiveInt] | None = Field(
        None,
        description="Segmentation write block in voxels (default: predict's block, repeated "
        "to span at least 2 µm along each axis; every block face costs a little accuracy).",
    )
    context: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="Voxels each segmentation block reads beyond its own, on each side "
        "(default: the model's context).",
    )

    @field_validator("thresholds")
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one threshold")
        return sorted(set(value))


class ProjectConfig(_Section):
    """The whole configuration of a project."""

    preset: str = Field(DEFAULT_PRESET, description="The dataset preset this config started from.")
    system: SystemConfig = Field(default_factory=SystemConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        dims = self.data.dims
        _arity("data.voxel_size", self.data.voxel_size, dims)
        for offset in self.train.neighborhood:
            _arity("train.neighborhood offsets", offset, dims)
        aug = self.train.augment
        _arity("train.augment.control_point_spacing", aug.control_point_spacing, dims)
        _arity("train.augment.jitter_sigma", aug.jitter_sigma, dims)
        for name in ("intensity_scale", "intensity_shift"):
            low, high = getattr(aug, name)
            if low > high:
                raise ValueError(f"train.augment.{name} must be (low, high), got ({low}, {high})")
        defects = aug.prob_missing + aug.prob_low_contrast + aug.prob_artifact + aug.prob_deform
        if defects > 1:
            raise ValueError(
                "train.augment.prob_missing + prob_low_contrast + prob_artifact + prob_deform "
                f"is {defects:g}: each section gets at most one defect, so keep the sum <= 1"
            )
        if self.train.stop_after is not None and self.train.validate_every == 0:
            raise ValueError(
                "train.stop_after stops when validation stops improving: set "
                "train.validate_every too, or unset train.stop_after"
            )
        model = self.model
        _arity("model.input_shape", model.input_shape, dims)
        output = _output_shape(model, self.train.model_type)
        if model.output_shape is None:
            # Bypass validate_assignment: this is derived, not user input.
            object.__setattr__(model, "output_shape", list(output))
        elif list(model.output_shape) != list(output):
            raise ValueError(
                f"model.output_shape {model.output_shape} does not match input_shape "
                f"{model.input_shape}: the UNet produces {list(output)} (remove output_shape "
                "to have it computed)"
            )
        if self.predict.input_shape is not None:
            _arity("predict.input_shape", self.predict.input_shape, dims)
        output_shape = self.predict_shapes()[1]
        if self.predict.block_shape is not None:
            _arity("predict.block_shape", self.predict.block_shape, dims)
            if any(b % o for b, o in zip(self.predict.block_shape, output_shape)):
                raise ValueError(
                    f"predict.block_shape {self.predict.block_shape} must be a multiple of the "
                    f"model output {output_shape}"
                    + (" (at predict.input_shape)" if self.predict.input_shape else "")
                )
        if self.predict.context is not None:
            _arity("predict.context", self.predict.context, dims)
        if self.segment.block_shape is not None:
            _arity("segment.block_shape", self.segment.block_shape, dims)
        if self.segment.context is not None:
            _arity("segment.context", self.segment.context, dims)
        return self

    # ---- derived values -------------------------------------------------------------
    def predict_shapes(self) -> tuple[list[int], list[int]]:
        """(input, output) of one forward pass when predicting: predict.input_shape and the
        output the UNet gives for it, else the training geometry."""
        if self.predict.input_shape is None:
            assert self.model.output_shape is not None  # set by validation
            return list(self.model.input_shape), list(self.model.output_shape)
        given = list(self.predict.input_shape)
        output = _output_shape(self.model, self.train.model_type, given, "predict.input_shape")
        return given, list(output)

    def context(self) -> list[int]:
        """Voxels each block reads beyond its write ROI, on each side."""
        if self.predict.context is not None:
            return list(self.predict.context)
        given, output = self.predict_shapes()
        return [(i - o) // 2 for i, o in zip(given, output)]

    def block_shape(self) -> list[int]:
        return list(self.predict.block_shape or self.predict_shapes()[1])

    def segment_block_shape(self) -> list[int]:
        """The segmentation write block: segment.block_shape, else predict's block repeated
        until it spans SEGMENT_BLOCK_MIN_NM along each axis."""
        if self.segment.block_shape is not None:
            return list(self.segment.block_shape)
        return [
            b * max(1, math.ceil(SEGMENT_BLOCK_MIN_NM / (b * v)))
            for b, v in zip(self.block_shape(), self.data.voxel_size)
        ]

    def anisotropic(self) -> bool:
        """True when z voxels are at least twice the size of xy voxels (serial-section EM)."""
        vs = self.data.voxel_size
        return self.data.dims == 3 and vs[0] >= 2 * max(vs[1:])

    def num_lsds(self) -> int:
        return 10 if self.data.dims == 3 else 6

    def affinity_neighborhood(self) -> list[list[int]]:
        """The affinity offsets: train.neighborhood, plus ×3 and ×9 with long_range."""
        base = [list(o) for o in self.train.neighborhood]
        if not self.train.long_range:
            return base
        return base + [[v * 3 for v in o] for o in base] + [[v * 9 for v in o] for o in base]


def _output_shape(
    model: ModelConfig,
    model_type: ModelType,
    input_shape: Sequence[int] | None = None,
    key: str = "model.input_shape",
) -> tuple[int, ...]:
    """The network output for `input_shape` (default model.input_shape), or ValueError
    naming `key`, with valid shapes nearby."""
    geometry = model.geometry()
    shape = list(model.input_shape if input_shape is None else input_shape)
    dims = len(shape)
    if model_type_spec(model_type).auto_context:
        try:
            return two_stage_output_shape(geometry, geometry, shape)
        except GeometryError as exc:
            try:
                hint = (
                    "; the smallest input that works is "
                    f"{list(two_stage_input_shape_for_output(geometry, geometry, [1] * dims))}"
                )
            except GeometryError:
                hint = ""
            raise ValueError(
                f"{key} {shape} is too small for {model_type.value}, "
                f"which chains two UNets: {exc}{hint}"
            ) from None
    try:
        return geometry.output_shape(shape)
    except GeometryError as exc:
        near = geometry.valid_input_shapes_near(shape)
        hint = (
            f"; valid input shapes nearby: {', '.join(str(list(n)) for n in near)}" if near else ""
        )
        raise ValueError(f"{key} {shape} does not fit the UNet: {exc}{hint}") from None


def _arity(name: str, values: list[Any], dims: int) -> None:
    if len(values) != dims:
        raise ValueError(f"{name} needs {dims} values (data.dims = {dims}), got {list(values)}")


# ---- presets ------------------------------------------------------------------------
def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """The overrides of a named preset, or of a preset file of the user's."""
    path = Path(name_or_path)
    if name_or_path in preset_names():
        path = PRESETS_DIR / f"{name_or_path}.toml"
    elif not (path.suffix == ".toml" and path.is_file()):
        raise InputError(
            f"unknown preset {name_or_path!r}: use one of {', '.join(preset_names())} "
            "or the path of a .toml preset file"
        )
    overrides = _read_toml(path)
    overrides.setdefault("preset", path.stem if path.parent == PRESETS_DIR else str(path))
    return overrides


def from_preset(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> ProjectConfig:
    """Defaults, then the preset, then `overrides` (nested dicts), validated."""
    data = deep_merge(load_preset(name_or_path), overrides or {})
    return validate(data, source=f"preset {name_or_path}")


def rebase(config: ProjectConfig, preset: str) -> ProjectConfig:
    """`config`'s own changes (relative to the preset it came from) on top of `preset`."""
    if preset == config.preset:
        return config
    own = _diff(config.model_dump(mode="json"), from_preset(config.preset).model_dump(mode="json"))
    own.pop("preset", None)
    own.get("model", {}).pop("output_shape", None)
    return from_preset(preset, own)


def _diff(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(old.get(key), Mapping):
            inner = _diff(value, old[key])
            if inner:
                changed[key] = inner
        elif old.get(key) != value:
            changed[key] = value
    return changed


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate(data: Mapping[str, Any], source: str = "config") -> ProjectConfig:
    """Build a ProjectConfig, turning pydantic's report into one InputError line."""
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid {source}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; `lsdctl config show` lists the keys)"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


# ---- project.toml ---------------------------------------------------------------------
def _read_toml(path: Path, remedy: str = "fix the file") -> dict[str, Any]:
    """The TOML document at `path`; an InputError of one line, naming the file, what is
    wrong with it and `remedy`, when it cannot be read, is not UTF-8 or not TOML."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): {remedy}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML ({exc}): {remedy}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def load(path: Path) -> ProjectConfig:
    """Read and validate a `project.toml`."""
    remedy = (
        "fix it in a text editor (saved as UTF-8), or write it anew from a preset with "
        f"`lsdctl init {path.parent.name} --force` (volumes and runs are kept)"
    )
    data = _read_toml(path, remedy)
    train = data.get("train")
    if isinstance(train, dict) and "amp" in train:
        logger.warning(
            "%s: train.amp is deprecated and read as train.precision = 'auto' (bf16 on GPUs "
            "that support it, fp32 on the CPU); set train.precision (bf16, fp16, fp32) "
            "instead",
            path,
        )
    return validate(data, source=str(path))


def dump(config: ProjectConfig) -> str:
    """The config as TOML, every field preceded by its documentation."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("lsdctl project configuration. Edit with `lsdctl config set|edit`,"))
    doc.add(tomlkit.comment("or by hand: `lsdctl config validate` checks it."))
    doc.add(tomlkit.nl())
    _fill(doc, config)
    return tomlkit.dumps(doc)


def _fill(container: Any, section: BaseModel) -> None:
    fields = type(section).model_fields
    scalars = {k: f for k, f in fields.items() if not _is_section(getattr(section, k))}
    tables = {k: f for k, f in fields.items() if _is_section(getattr(section, k))}
    for key, field in scalars.items():
        value = getattr(section, key)
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("derived"):
            # Written as a comment: a stored derived value would go stale on hand edits.
            container.add(
                tomlkit.comment(f"{key} = {_plain(value)}  (computed; {field.description})")
            )
            continue
        if value is None:
            container.add(tomlkit.comment(f"{key}: {field.description} (unset)"))
            continue
        if field.description:
            container.add(tomlkit.comment(field.description))
        container.add(key, _plain(value))
    for key in tables:
        table = tomlkit.table()
        doc = type(getattr(section, key)).__doc__
        if doc:
            table.add(tomlkit.comment(doc.strip().splitlines()[0]))
        _fill(table, getattr(section, key))
        container.add(key, table)


def _is_section(value: Any) -> bool:
    return isinstance(value, BaseModel)


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def save(config: ProjectConfig, path: Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    write_atomic(path, dump(config))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- dotted keys (config get/set) ---------------------------------------------------
def iter_keys(section: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """(dotted key, value, description) of every leaf field."""
    for key, field in type(section).model_fields.items():
        value = getattr(section, key)
        if _is_section(value):
            yield from iter_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value, field.description or ""


def resolve_key(config: ProjectConfig, dotted: str) -> list[str]:
    """The path of field names for a dotted key; section names match case-insensitively."""
    path: list[str] = []
    section: Any = config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(section, BaseModel):
            raise InputError(f"unknown config key {dotted!r}: {'.'.join(path)} has no sub-keys")
        fields = type(section).model_fields
        match = next((name for name in fields if name.lower() == part.lower()), None)
        if match is None:
            options = ", ".join(fields)
            where = ".".join(path) or "the top level"
            elsewhere = [k for k, _, _ in iter_keys(config) if k.split(".")[-1] == part.lower()]
            hint = f" (did you mean {' or '.join(elsewhere)}?)" if elsewhere else ""
            raise InputError(f"unknown config key {dotted!r}{hint}: {where} has {options}")
        path.append(match)
        section = getattr(section, match)
        if i == len(parts) - 1 and _is_section(section):
            raise InputError(
                f"{dotted!r} is a section, not a value: name one of its keys, e.g. "
                f"{dotted}.{next(iter(type(section).model_fields))}"
            )
    return path


def get_value(config: ProjectConfig, dotted: str) -> Any:
    value: Any = config
    for part in resolve_key(config, dotted):
        value = getattr(value, part)
    return _plain(value)


def parse_value(text: str) -> Any:
    """A command-line value as TOML (numbers, booleans, lists); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def with_value(config: ProjectConfig, dotted: str, value: Any) -> ProjectConfig:
    """A new, validated config with one key changed; InputError says why if it is invalid."""
    path = resolve_key(config, dotted)
    data = config.model_dump(mode="json")
    if path != ["model", "output_shape"]:
        # The output shape follows from the rest of the model: recompute it rather than
        # reject a change of input shape or layout against a stale stored value.
        data["model"]["output_shape"] = None
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return validate(data, source=f"value for {'.'.join(path)}")
