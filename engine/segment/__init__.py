"""Blockwise segmentation (`python -m engine.segment RUN_DIR`): the run and its workers,
fragments (watershed), the region adjacency graph and agglomeration.
This file stays light; the modules import daisy, waterz and mwatershed."""
