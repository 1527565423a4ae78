"""Gunpowder nodes of lsdctl's training pipelines, one per module, re-exported flat."""

from engine.nodes.add_lsds import AddLsds

__all__ = ["AddLsds"]
