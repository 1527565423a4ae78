"""Gunpowder nodes of lsdctl's training pipelines, one per module, re-exported flat."""

from engine.nodes.add_lsds import AddLsds
from engine.nodes.balance_labels import BalanceLabels
from engine.nodes.compact_label_ids import CompactLabelIds
from engine.nodes.defect_augment import defect_augment
from engine.nodes.elastic_augment import ElasticAugment
from engine.nodes.grow_boundary import GrowBoundary
from engine.nodes.pad import Pad
from engine.nodes.random_location import MaskedRandomLocation
from engine.nodes.stack import Stack
from engine.nodes.sync_array_source import SyncArraySource

__all__ = [
    "AddLsds",
    "BalanceLabels",
    "CompactLabelIds",
    "ElasticAugment",
    "GrowBoundary",
    "MaskedRandomLocation",
    "Pad",
    "Stack",
    "SyncArraySource",
    "defect_augment",
]
