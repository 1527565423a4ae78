"""The torch networks: a valid-convolution UNet and the LSD paper's models built on it."""

from __future__ import annotations

from engine.models.lsd_models import (
    AUTO_CONTEXT_TYPES,
    MODEL_TYPES,
    AutoContextModel,
    LsdNetwork,
    MultiTaskModel,
    SingleTaskModel,
    build_model,
    num_lsd_channels,
)
from engine.models.unet import UNet

__all__ = [
    "AUTO_CONTEXT_TYPES",
    "MODEL_TYPES",
    "AutoContextModel",
    "LsdNetwork",
    "MultiTaskModel",
    "SingleTaskModel",
    "UNet",
    "build_model",
    "num_lsd_channels",
]
