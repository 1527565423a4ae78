"""Training (`python -m engine.train RUN_DIR`): the trainer, its step, precision, data
feeding and prefetch, data-parallel ranks, the gunpowder pipeline and validation.
This file stays light; the modules import torch and gunpowder."""
