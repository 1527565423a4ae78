"""The torch networks: a valid-convolution UNet and the LSD paper's models built on it.

`engine.models.registry` (the model types, no torch) is imported by the light modules
(engine.project.config, and so the CLI); importing it runs this package's `__init__`, so the
torch parts below load only when one of them is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it (imported on first access).
_LAZY = {
    "AUTO_CONTEXT_TYPES": "engine.models.lsd_models",
    "MODEL_TYPES": "engine.models.lsd_models",
    "AutoContextModel": "engine.models.lsd_models",
    "LsdNetwork": "engine.models.lsd_models",
    "MultiTaskModel": "engine.models.lsd_models",
    "SingleTaskModel": "engine.models.lsd_models",
    "build_model": "engine.models.lsd_models",
    "num_lsd_channels": "engine.models.lsd_models",
    "UNet": "engine.models.unet",
}

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


def __getattr__(name: str) -> Any:
    # importlib, not an import statement: the import contracts (lint-imports) would count
    # a statement here as the light registry's path to torch.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
