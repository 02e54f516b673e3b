from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedbench.engine.local import LocalSGD, Schedule, sgd_step_
from fedbench.engine.params import FlatParams


class SequentialEngine:
    """Clients trained one after another on a single model object.

    The model's parameters and gradients are views into two flat buffers, so loading the global
    model is one ``copy_`` and the SGD step is a handful of fused ops on the whole vector. No model
    is ever copied per client.
    """

    name = "sequential"

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, local: LocalSGD):
        self.model, self.x, self.y, self.local = model, x, y, local
        self.layout = FlatParams(model)
        device = next(model.parameters()).device
        self.flat = torch.zeros(self.layout.dim, device=device)
        self.grad = torch.zeros(self.layout.dim, device=device)
        self.buf = torch.zeros(self.layout.dim, device=device)
        self.layout.bind(model, self.flat, self.grad)

    def train(self, global_params: torch.Tensor, schedules: list[Schedule]) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.empty(len(schedules), self.layout.dim, device=global_params.device)
        losses = torch.zeros(len(schedules), device=global_params.device)
        bufs = [self.buf] if self.local.momentum else None
        for i, sched in enumerate(schedules):
            self.flat.copy_(global_params)
            self.buf.zero_()
            index = torch.as_tensor(sched.index, device=self.x.device)
            total = torch.zeros((), device=global_params.device)
            for s, length in enumerate(sched.lengths.tolist()):
                batch = index[s, :length]
                self.grad.zero_()
                loss = F.cross_entropy(self.model(self.x[batch]), self.y[batch])
                loss.backward()
                with torch.no_grad():
                    sgd_step_([self.flat], [self.grad], bufs, self.local)
                total += loss.detach()
            out[i] = self.flat
            losses[i] = total / max(sched.steps, 1)
        return out, losses
