"""lsdctl's engine: configs, data, LSD targets, gunpowder pipelines, models, entry points.

Importing `engine` is cheap: heavy modules (torch, gunpowder, daisy) are only imported by
the modules that need them, so the CLI and daemon can use config and project layout.
"""
