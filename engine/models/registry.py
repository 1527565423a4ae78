"""The model types, each declared once: its network, what it trains on, what it predicts.

`train.model_type` takes its values from `MODEL_TYPES` (engine.project.config), and so do the
CLI's help and docs/models.md; the network builder (engine.models.lsd_models), the
losses (engine.models.losses), training (engine.train.train_step, engine.train.trainer),
prediction (engine.predict.plan, engine.predict.predictor) and validation read each type's
properties here instead of testing its name. Adding a model type is one `ModelTypeSpec`
below (plus its network class, when no builder of lsd_models fits).

Light on purpose: engine.project.config, and through it the CLI, imports this module, so the
torch parts are named as "module:attribute" strings and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.errors import InputError

# The network's outputs, and the targets that train them: "lsds" (LSDs, 10 channels in
# 3D, 6 in 2D) and "affs" (affinities, one channel per neighborhood offset).
LSDS, AFFS = "lsds", "affs"
_PREDICTION_PREFIX = "pred_"


@dataclass(frozen=True)
class ModelTypeSpec:
    """One model type: everything the engine needs to know about it, by name.

    - `name`: the value of `train.model_type`, upper-case.
    - `summary`: one line for the docs and the config's comments.
    - `network`: "module:function" building the torch network (signature of
      `engine.models.lsd_models.single_task_network`).
    - `outputs`: the network's outputs in `forward`'s order; the training pipeline
      computes a target (`gt_<output>`, `<output>_weights`) for each of them.
    - `trains`: the outputs whose loss trains the network (the last stage's, for a
      two-stage type); `loss` is "module:class" of that loss, whose `input_names` are
      `pred_<o>, gt_<o>, <o>_weights` for each `o` of `trains`, in that order.
    - `stage1`, `stage2`: for an auto-context type, the model types of its two chained
      networks; stage one trains alone first (with its type's loss), then stage two on
      stage one's output (with `loss`); `outputs` are stage one's, then stage two's.
      None for a single network.
    - `stage2_raw`: stage two sees the raw, cropped to stage one's output, beside it.
    """

    name: str
    summary: str
    network: str
    outputs: tuple[str, ...]
    trains: tuple[str, ...]
    loss: str
    stage1: str | None = None
    stage2: str | None = None
    stage2_raw: bool = False

    @property
    def auto_context(self) -> bool:
        """Two networks chained: stage one (`stage1`'s type), then stage two on its output."""
        return self.stage1 is not None

    @property
    def predicts(self) -> tuple[str, ...]:
        """The arrays a prediction writes (`pred_lsds`, `pred_affs`), in `outputs`' order."""
        return tuple(_PREDICTION_PREFIX + output for output in self.outputs)

    @property
    def segmentable(self) -> bool:
        """Whether it predicts affinities, which segmentation (and so validation) needs."""
        return AFFS in self.outputs

    def build_network(self, model: Any, channels: dict[str, int]) -> Any:
        """The torch network (an `engine.models.lsd_models.LsdNetwork`) for a model config
        and the channels of each output; imports torch."""
        return _resolve(self.network)(self, model, channels)

    def loss_module(self) -> Any:
        """A fresh instance of the loss (a torch module); imports torch."""
        return _resolve(self.loss)()


_SINGLE = "engine.models.lsd_models:single_task_network"
_LSD_LOSS = "engine.models.losses:LsdLoss"
_AFF_LOSS = "engine.models.losses:AffinityLoss"

MODEL_TYPES: dict[str, ModelTypeSpec] = {
    spec.name: spec
    for spec in (
        ModelTypeSpec(
            name="MTLSD",
            summary="LSDs and affinities from one net (multitask)",
            network="engine.models.lsd_models:multitask_network",
            outputs=(LSDS, AFFS),
            trains=(LSDS, AFFS),
            loss="engine.models.losses:MtlsdLoss",
        ),
        ModelTypeSpec(
            name="LSD",
            summary="LSDs only (stage one of the auto-context models)",
            network=_SINGLE,
            outputs=(LSDS,),
            trains=(LSDS,),
            loss=_LSD_LOSS,
        ),
        ModelTypeSpec(
            name="AFF",
            summary="affinities only: the baseline",
            network=_SINGLE,
            outputs=(AFFS,),
            trains=(AFFS,),
            loss=_AFF_LOSS,
        ),
        ModelTypeSpec(
            name="ACLSD",
            summary="affinities from a trained LSD net's output (auto-context)",
            network="engine.models.lsd_models:auto_context_network",
            outputs=(LSDS, AFFS),
            trains=(AFFS,),
            loss=_AFF_LOSS,
            stage1="LSD",
            stage2="AFF",
        ),
        ModelTypeSpec(
            name="ACRLSD",
            summary="affinities from LSDs plus raw (auto-context)",
            network="engine.models.lsd_models:auto_context_network",
            outputs=(LSDS, AFFS),
            trains=(AFFS,),
            loss=_AFF_LOSS,
            stage1="LSD",
            stage2="AFF",
            stage2_raw=True,
        ),
    )
}
MODEL_TYPE_NAMES: tuple[str, ...] = tuple(MODEL_TYPES)


def model_type_spec(name: str) -> ModelTypeSpec:
    """The declaration of the model type `name` (exact, upper-case); InputError naming
    the registered types otherwise."""
    spec = MODEL_TYPES.get(str(name))
    if spec is None:
        raise InputError(f"unknown model type {str(name)!r}; allowed: {', '.join(MODEL_TYPES)}")
    return spec


def names_of(specs: Iterable[ModelTypeSpec] | None = None, last: str = "or") -> str:
    """The names as prose: "MTLSD, LSD, AFF, ACLSD or ACRLSD" (all types by default)."""
    names = [spec.name for spec in (MODEL_TYPES.values() if specs is None else specs)]
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} {last} {names[-1]}"


def segmentable_names() -> str:
    """The types that predict affinities, as prose ("MTLSD, AFF, ACLSD or ACRLSD")."""
    return names_of(spec for spec in MODEL_TYPES.values() if spec.segmentable)


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value
