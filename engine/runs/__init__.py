"""A run's directory and what is written into it: the run spec (run.toml), resolution of
a request into one, events, checkpoints and their checks, imported models.
This file stays light; checkpoints and model_import import torch."""
