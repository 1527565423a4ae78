"""Training targets computed from labels."""

from engine.targets.lsds import compute_lsds

__all__ = ["compute_lsds"]
