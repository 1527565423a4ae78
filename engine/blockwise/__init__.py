"""Blockwise tasks on daisy, for predict, segment and evaluate.

A task covers an output ROI with write blocks (aligned to the output's zarr chunks) and
reads each block grown by a context. Workers are processes of their own: daisy starts
each through `spawn.start_worker`, which hands it to an executor (`launchers/`: serve
blocks in that process, `local`, or submit a Slurm or LSF job that connects back to
daisy's scheduler). torch is never imported by the scheduling process.

What survives a crash: daisy records finished blocks in `tracking_dir` (one byte a
block, beside the output), so a task started again does only the rest. A block that
raises is caught in the worker, reported as failed and retried (`retries`); the worker
lives on, so the model is loaded once per worker, not once per failure. A worker that
dies (killed, out of memory) is replaced, up to a cap. Block events are written by each
worker to a file of its own (`RUN_DIR/blocks/`, safe on a shared cluster filesystem)
and relayed by the scheduling process into `events.jsonl`, the run's single writer.

The rooms: task.py (declarations: grid, stages, worker spec, outcome), run.py (the run
loop on daisy), spawn.py (daisy's spawn function), launchers/ (the executor registry,
one module per executor), worker.py (serving blocks; the cluster worker's main),
relay.py (block events and progress into events.jsonl), stopping.py (stop requests,
ending the workers), shell.py (the entry points' shell and exit codes).
This file stays light: no daisy import.
"""
