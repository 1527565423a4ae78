"""One optimisation step of training, the same for one process and for DDP ranks.

The forward pass and the loss form one module (`LossOf`), so that DistributedDataParallel
sees every forward, the auto-context models' stage one included (calling a submodule
past the DDP wrapper would leave its gradients unsynchronised), and so that
torch.compile compiles model and loss together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.models.losses import loss_for
from engine.project.config import AUTO_CONTEXT, ModelType
from engine.train.distributed import Ranks
from engine.train.precision import Precision

logger = logging.getLogger(__name__)


class LossOf(nn.Module):
    """`forward(tensors, in_stage1)`: the training loss of `model` on a batch's tensors
    (raw, and the targets and weights of what the model type trains)."""

    def __init__(self, model: nn.Module, model_type: ModelType) -> None:
        super().__init__()
        self.model = model
        self.model_type = model_type
        self.main_loss = loss_for(model_type)
        self.lsd_loss = loss_for(ModelType.LSD)
        self.aff_loss = loss_for(ModelType.AFF)

    def forward(self, t: dict[str, torch.Tensor], in_stage1: bool) -> torch.Tensor:
        model, model_type = self.model, self.model_type
        if model_type in AUTO_CONTEXT:
            if in_stage1:
                return self.lsd_loss(model.stage1(t["raw"]), t["gt_lsds"], t["lsds_weights"])  # type: ignore[operator]
            _, affs = model(t["raw"])
            return self.aff_loss(affs, t["gt_affs"], t["affs_weights"])
        if model_type == ModelType.MTLSD:
            lsds, affs = model(t["raw"])
            return self.main_loss(
                lsds, t["gt_lsds"], t["lsds_weights"], affs, t["gt_affs"], t["affs_weights"]
            )
        if model_type == ModelType.LSD:
            return self.main_loss(model(t["raw"]), t["gt_lsds"], t["lsds_weights"])
        return self.main_loss(model(t["raw"]), t["gt_affs"], t["affs_weights"])


class TrainStep:
    """`step(tensors, in_stage1)`: zero the gradients, forward and backward under the
    precision's autocast (fp16 with loss scaling), step the optimizer; returns the loss,
    detached, averaged over the ranks (the loss of the ranks' batches together).

    With parallel `ranks` the module is wrapped in DistributedDataParallel, which
    averages the gradients. With `compile` it is torch.compile'd; compilation happens at
    the first call, and if that fails `warn(message)` is called and the step runs, and
    keeps running, without it.
    """

    def __init__(
        self,
        model: nn.Module,
        model_type: ModelType,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        ranks: Ranks,
        compile: bool = False,
        warn: Callable[[str], None] = logger.warning,
    ) -> None:
        self.optimizer = optimizer
        self.precision = precision
        self.ranks = ranks
        self.scaler = precision.scaler()
        self._warn = warn
        module: nn.Module = LossOf(model, model_type)
        if ranks.parallel:
            device = precision.device
            module = nn.parallel.DistributedDataParallel(
                module,
                device_ids=[device.index] if device.type == "cuda" else None,
                # An auto-context model trains one stage at a time: the other's
                # parameters get no gradient.
                find_unused_parameters=model_type in AUTO_CONTEXT,
            )
        self._eager = module
        self._module: Any = torch.compile(module) if compile else module
        self._unproven = compile

    @property
    def compiled(self) -> bool:
        return self._module is not self._eager

    def __call__(self, tensors: dict[str, torch.Tensor], in_stage1: bool = False) -> torch.Tensor:
        try:
            loss = self._forward_backward(self._module, tensors, in_stage1)
        except Exception as exc:
            if not self._unproven:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._warn(
                f"torch.compile failed ({type(exc).__name__}: {first[:300]}); training "
                "goes on without it (set train.compile = false to skip the attempt)"
            )
            logger.debug("torch.compile failure", exc_info=True)
            self._module = self._eager
            loss = self._forward_backward(self._module, tensors, in_stage1)
        self._unproven = False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return self.ranks.mean(loss.detach())

    def _forward_backward(
        self, module: Any, tensors: dict[str, torch.Tensor], in_stage1: bool
    ) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            loss: torch.Tensor = module(tensors, in_stage1)
        self.scaler.scale(loss).backward()
        return loss
