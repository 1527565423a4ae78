"""Blockwise prediction (`python -m engine.predict RUN_DIR`): the predictor (run and
worker factory), tiles batched over a worker's lanes and the forward pass on them.
This file stays light; the modules import torch and daisy."""
