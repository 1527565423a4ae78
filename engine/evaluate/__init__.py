"""Evaluation (`python -m engine.evaluate RUN_DIR`): the run, the metrics (VOI, adapted
Rand), contingency tables and the per-block counts they are built from.
This file stays light."""
