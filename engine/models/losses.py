"""The training losses of the LSD paper: a weighted mean squared error per output.

`loss_for(model_type)` gives a torch module whose `forward` takes, in this order, the
prediction, the target and the weights of each output the model type trains
(`input_names` lists the argument names, for gunpowder's `loss_inputs`); which loss a
type trains with is declared in engine.models.registry (`ModelTypeSpec.loss`):

- `LSD`: `pred_lsds, gt_lsds, lsds_weights`
- `AFF`, `ACLSD`, `ACRLSD`: `pred_affs, gt_affs, affs_weights` (the auto-context models
  train stage 2 on the affinities, with stage 1 frozen)
- `MTLSD`: both, LSDs first; the loss is the sum of the two.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.errors import EngineError
from engine.models.registry import model_type_spec


def weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Mean of `weights * (prediction - target)**2` over the voxels with weight > 0.

    `weights` (non-negative) must broadcast to the prediction's shape. Voxels of weight 0
    count neither in the sum nor in the mean, so masked-out voxels do not dilute the loss.
    With no positive weight at all the loss is the plain mean of the weighted errors,
    i.e. 0, still attached to the graph so that a backward pass works.
    """
    if prediction.shape != target.shape:
        raise EngineError(
            f"weighted_mse: prediction {list(prediction.shape)} and target "
            f"{list(target.shape)} differ in shape"
        )
    scaled = weights * (prediction - target) ** 2
    if scaled.shape != prediction.shape:
        raise EngineError(
            f"weighted_mse: weights {list(weights.shape)} do not broadcast to "
            f"{list(prediction.shape)}"
        )
    counted = (weights > 0).expand(scaled.shape)
    # Sum over counted voxels / their number, without a data-dependent branch (no host
    # sync on a GPU); with none counted this is 0 / 1, the plain mean of all-zero terms.
    total = torch.where(counted, scaled, torch.zeros_like(scaled)).sum()
    return total / counted.sum().clamp(min=1).to(scaled.dtype)


class LsdLoss(nn.Module):
    """Weighted MSE of the LSDs."""

    input_names: tuple[str, ...] = ("pred_lsds", "gt_lsds", "lsds_weights")

    def forward(
        self, pred_lsds: torch.Tensor, gt_lsds: torch.Tensor, lsds_weights: torch.Tensor
    ) -> torch.Tensor:
        return weighted_mse(pred_lsds, gt_lsds, lsds_weights)


class AffinityLoss(nn.Module):
    """Weighted MSE of the affinities."""

    input_names: tuple[str, ...] = ("pred_affs", "gt_affs", "affs_weights")

    def forward(
        self, pred_affs: torch.Tensor, gt_affs: torch.Tensor, affs_weights: torch.Tensor
    ) -> torch.Tensor:
        return weighted_mse(pred_affs, gt_affs, affs_weights)


class MtlsdLoss(nn.Module):
    """The sum of the LSD and the affinity weighted MSEs (MTLSD)."""

    input_names: tuple[str, ...] = LsdLoss.input_names + AffinityLoss.input_names

    def forward(
        self,
        pred_lsds: torch.Tensor,
        gt_lsds: torch.Tensor,
        lsds_weights: torch.Tensor,
        pred_affs: torch.Tensor,
        gt_affs: torch.Tensor,
        affs_weights: torch.Tensor,
    ) -> torch.Tensor:
        return weighted_mse(pred_lsds, gt_lsds, lsds_weights) + weighted_mse(
            pred_affs, gt_affs, affs_weights
        )


def loss_for(model_type: str) -> LsdLoss | AffinityLoss | MtlsdLoss:
    """The loss module that trains `model_type` (one of MODEL_TYPES); InputError otherwise."""
    loss: LsdLoss | AffinityLoss | MtlsdLoss = model_type_spec(model_type).loss_module()
    return loss
