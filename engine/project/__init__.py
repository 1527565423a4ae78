"""A project's settings and folder: the config models and presets, the project layout,
older config formats, and the lineage of runs. Light: no torch, gunpowder or daisy."""
