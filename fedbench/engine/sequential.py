from __future__ import annotations

import torch
from torch import nn

from fedbench.data.batch import BatchPrep
from fedbench.engine.local import LocalRule, batch_loss
from fedbench.engine.params import FlatParams
from fedbench.engine.schedule import Schedule


class SequentialEngine:
    """Clients trained one after another on a single model object.

    The model's parameters and gradients are views into two flat buffers, so loading the global
    model is one ``copy_`` and the local step (:class:`~fedbench.engine.local.LocalRule`) is a
    handful of fused ops on the whole vector. No model is ever copied per client.
    """

    name = "sequential"

    def __init__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rule: LocalRule, prep: BatchPrep | None = None
    ):
        self.model, self.x, self.y, self.rule = model, x, y, rule
        self.prep = prep or BatchPrep()
        self.layout = FlatParams(model)
        device = next(model.parameters()).device
        self.flat = torch.zeros(self.layout.dim, device=device)
        self.grad = torch.zeros(self.layout.dim, device=device)
        self.layout.bind(model, self.flat, self.grad)
        self.state = rule.init([self.flat])

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def train(
        self, global_params: torch.Tensor, schedules: list[Schedule], const: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local models ``(n, d)`` and mean local losses ``(n,)``; ``const`` ``(n, d)`` holds each
        client's constant term (see :class:`LocalRule`)."""
        out = torch.empty(len(schedules), self.layout.dim, device=global_params.device)
        losses = torch.zeros(len(schedules), device=global_params.device)
        for i, sched in enumerate(schedules):
            self.flat.copy_(global_params)
            if self.state is not None:
                torch._foreach_zero_(self.state)
            k = None if const is None else [self.rule.prepare(const[i])]
            index = torch.as_tensor(sched.index, device=self.x.device)
            aug = None if sched.aug is None else torch.as_tensor(sched.aug, device=self.x.device)
            total = torch.zeros((), device=global_params.device)
            for s, length in enumerate(sched.lengths.tolist()):
                batch = index[s, :length]
                self.grad.zero_()
                xb = self.prep(self.x[batch], None if aug is None else aug[s, :length])
                loss = batch_loss(self.model(xb), self.y[batch])
                loss.backward()
                with torch.no_grad():
                    self.rule.step_([self.flat], [self.grad], self.state, k)
                total += loss.detach()
            out[i] = self.flat
            losses[i] = total / max(sched.steps, 1)
        return out, losses
