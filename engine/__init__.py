"""lsdctl's engine: everything that computes. The floor plan, one room per line:

- errors.py     EngineError, the one exception root; InputError (bad input, exit 2)
- entry.py      what every `python -m engine.<kind> RUN_DIR` does first (logging, run dir)
- geometry.py   UNet shape arithmetic: valid input and output shapes, stage crops
- contract/     the run directory's contract, the one engine room the daemon imports
                (standard library and pydantic only): file names, run ids, checkpoint
                names, the event schema with its writer and readers, the resolver's
                request and answer
- project/      a project's settings and folder: config models and presets, layout,
                older config formats, lineage of runs
- data/         volumes on disk (zarr, OME-NGFF, imports, checks), regions, masks, the
                network's input convention, synthetic data
- runs/         a run directory: run.toml (spec), resolving a request into one,
                checkpoints and their checks, imported models
- models/       the torch networks (UNet, the LSD paper's models) and losses
- targets/      training targets computed from labels (LSDs)
- nodes/        gunpowder nodes, one per file, each with its kernel
- train/        `python -m engine.train`: the trainer, its step, precision, data feeding,
                data-parallel ranks, the gunpowder pipeline, validation
- blockwise/    daisy machinery: tasks, the run loop, workers, event relay, stopping, the
                entry points' shell; launchers/ is the executor registry (local, Slurm, LSF)
- predict/      `python -m engine.predict`: the predictor and its tiled forward pass
- segment/      `python -m engine.segment`: fragments, region graph, agglomeration
- evaluate/     `python -m engine.evaluate`: metrics, contingency tables, block counts

Importing `engine` is cheap: heavy modules (torch, gunpowder, daisy) are only imported by
the modules that need them, and the rooms' `__init__.py` import nothing (contract/'s
re-exports its three light modules), so the CLI can use config and project layout.
"""
