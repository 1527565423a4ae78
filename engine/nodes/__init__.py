"""Gunpowder nodes of lsdctl's training pipelines, one per module, re-exported flat."""

from engine.nodes.add_lsds import AddLsds
from engine.nodes.balance_labels import BalanceLabels
from engine.nodes.defect_augment import defect_augment
from engine.nodes.elastic_augment import ElasticAugment
from engine.nodes.pad import Pad
from engine.nodes.random_location import MaskedRandomLocation
from engine.nodes.stack import Stack

__all__ = [
    "AddLsds",
    "BalanceLabels",
    "ElasticAugment",
    "MaskedRandomLocation",
    "Pad",
    "Stack",
    "defect_augment",
]
