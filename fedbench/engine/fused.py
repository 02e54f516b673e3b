from __future__ import annotations

import torch
from torch import nn

from fedbench.engine.local import LocalSGD, Schedule
from fedbench.engine.vmap import VmapEngine


def fused_supported(model: nn.Module) -> tuple[bool, str]:
    """Whether ``model`` is a stack the fused engine can train: ``nn.Sequential`` of an optional
    leading ``Flatten``, then ``Linear`` layers with ``ReLU`` between them (logreg, MLPs)."""
    if not isinstance(model, nn.Sequential):
        return False, "the fused engine needs an nn.Sequential model"
    layers = list(model)
    if layers and isinstance(layers[0], nn.Flatten):
        if (layers[0].start_dim, layers[0].end_dim) != (1, -1):
            return False, "the fused engine needs nn.Flatten() with default dimensions"
        layers = layers[1:]
    kinds = ["linear" if isinstance(m, nn.Linear) else "relu" if isinstance(m, nn.ReLU) else None for m in layers]
    expected = ["linear" if i % 2 == 0 else "relu" for i in range(len(kinds))]
    if not kinds or kinds != expected or kinds[-1] != "linear":
        return False, "the fused engine needs Flatten? -> Linear (-> ReLU -> Linear)* (logreg, mlp)"
    if any(m.bias is None for m in layers if isinstance(m, nn.Linear)):
        return False, "the fused engine needs Linear layers with bias"
    return True, ""


class FusedEngine(VmapEngine):
    """Clients of a Linear/ReLU network trained with a hand-written batched backward pass that
    adds each step straight into the stacked weights.

    Same clients, batches, masking, grouping and SGD rule as :class:`VmapEngine` (and so the same
    models up to float rounding), but per layer and step the weight update
    ``W <- W - lr * (g^T h + weight_decay * W)`` is one in-place ``baddbmm_``: no per-client
    gradient tensor is ever written, which is what bounds the vmap engine on CPU. For a loss
    ``mean_j CE(z_j, y_j)`` over a client's ``c`` real samples, the logit gradient is
    ``g = (softmax(z) - onehot(y)) * mask / c``; through a layer ``z = h W^T + b``:
    ``dW = g^T h``, ``db = sum_j g_j``, ``dh = g W`` (times ``1[h > 0]`` through a ReLU).
    """

    name = "fused"

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        local: LocalSGD,
        max_pad_fraction: float = 0.25,
        max_group_size: int | None = None,
    ):
        ok, why = fused_supported(model)
        if not ok:
            raise ValueError(why)
        super().__init__(model, x, y, local, max_pad_fraction, max_group_size)
        self.linear_names = [
            (n + ".weight", n + ".bias") for n, m in model.named_children() if isinstance(m, nn.Linear)
        ]

    def _make_train_step(self, compile: bool):
        return None  # the step is written out in _train_group

    def _train_group(self, global_params: torch.Tensor, schedules: list[Schedule]):
        n, device, local = len(schedules), global_params.device, self.local
        index_t, mask_t, client_steps, max_steps = self._pack(schedules, device)
        params = self.layout.unflatten_stacked(global_params.expand(n, -1))
        weights = [params[w] for w, _ in self.linear_names]
        biases = [params[b] for _, b in self.linear_names]
        bufs_w = [torch.zeros_like(w) for w in weights] if local.momentum else None
        bufs_b = [torch.zeros_like(b) for b in biases] if local.momentum else None
        total = torch.zeros(n, device=device)
        with torch.no_grad():
            for s in range(max_steps):
                idx, mask = index_t[s], mask_t[s]
                active = (client_steps > s).to(global_params.dtype)
                inputs = [self.x[idx].flatten(2)]
                for i, (w, b) in enumerate(zip(weights, biases)):
                    z = torch.baddbmm(b.unsqueeze(1), inputs[-1], w.transpose(1, 2))
                    inputs.append(z.relu_() if i < len(weights) - 1 else z)
                logits, y = inputs.pop(), self.y[idx]
                count = mask.sum(1).clamp_min(1.0)
                log_p = logits.log_softmax(-1)
                total += (-log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1) * mask).sum(1) / count * active
                g = log_p.exp_()
                g.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(g[..., :1], -1.0))
                g.mul_((mask / count.unsqueeze(1)).unsqueeze(-1))
                step = (-local.lr * active).view(n, 1, 1)
                for i in reversed(range(len(weights))):
                    w, b, h = weights[i], biases[i], inputs[i]
                    g_in = torch.bmm(g, w) if i > 0 else None  # before w changes
                    if local.momentum:
                        bw, bb = bufs_w[i], bufs_b[i]
                        bw.mul_(local.momentum).baddbmm_(g.transpose(1, 2), h)
                        bb.mul_(local.momentum).add_(g.sum(1))
                        if local.weight_decay:
                            bw.add_(w, alpha=local.weight_decay)
                            bb.add_(b, alpha=local.weight_decay)
                        w.addcmul_(bw, step)
                        b.addcmul_(bb, step.view(n, 1))
                    else:
                        if local.weight_decay:
                            w.mul_(1 + local.weight_decay * step)
                            b.mul_(1 + local.weight_decay * step.view(n, 1))
                        g_step = g * active.view(n, 1, 1)
                        w.baddbmm_(g_step.transpose(1, 2), h, alpha=-local.lr)
                        b.add_(g_step.sum(1), alpha=-local.lr)
                    if g_in is not None:
                        g = g_in.mul_(h > 0)
        return self.layout.flatten_stacked(params), total / client_steps.clamp_min(1)
