"""Blockwise prediction (`python -m engine.predict RUN_DIR`): what a run writes and how it
resumes (plan), the run itself (launch), the worker a daisy worker loads once (predictor),
its tiles gathered from several blocks into batches (tile_batcher) and the forward pass
on a batch (tile_forward). This file stays light; the modules import torch and daisy."""
