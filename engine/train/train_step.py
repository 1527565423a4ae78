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

from engine.models.registry import model_type_spec
from engine.train.distributed import Ranks
from engine.train.precision import Precision

logger = logging.getLogger(__name__)


class LossOf(nn.Module):
    """`forward(tensors, in_stage1)`: the training loss of `model` on a batch's tensors
    (raw, and the targets and weights of what the model type trains).

    What to compare comes from the model type's declaration (engine.models.registry):
    the loss's `input_names` say which output (`pred_<output>`) and which batch arrays
    (`gt_<output>`, `<output>_weights`) it takes; in stage one of an auto-context type,
    its `stage1` network trains alone with the loss of the stage's own type.
    """

    def __init__(self, model: nn.Module, model_type: str) -> None:
        super().__init__()
        self.model = model
        self.model_type = model_type
        spec = model_type_spec(model_type)
        self.output_names = spec.outputs
        self.main_loss = spec.loss_module()
        self.stage1_loss: nn.Module | None = None
        self.stage1_outputs: tuple[str, ...] = ()
        if spec.stage1 is not None:
            stage1 = model_type_spec(spec.stage1)
            self.stage1_loss, self.stage1_outputs = stage1.loss_module(), stage1.outputs

    def forward(self, t: dict[str, torch.Tensor], in_stage1: bool) -> torch.Tensor:
        if in_stage1 and self.stage1_loss is not None:
            predicted = _named(self.stage1_outputs, self.model.stage1(t["raw"]))  # type: ignore[operator]
            return _apply(self.stage1_loss, predicted, t)
        return _apply(self.main_loss, _named(self.output_names, self.model(t["raw"])), t)


def _named(names: tuple[str, ...], outputs: Any) -> dict[str, torch.Tensor]:
    # A single-output network returns its tensor, not a 1-tuple.
    return dict(zip(names, outputs if isinstance(outputs, tuple) else (outputs,), strict=True))


def _apply(loss: nn.Module, predicted: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> Any:
    """`loss` called with its `input_names`: `pred_X` from the outputs, the rest from the batch."""
    arguments = [
        predicted[name.removeprefix("pred_")] if name.startswith("pred_") else t[name]
        for name in loss.input_names  # type: ignore[union-attr]
    ]
    return loss(*arguments)


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
        model_type: str,
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
                find_unused_parameters=model_type_spec(model_type).auto_context,
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
