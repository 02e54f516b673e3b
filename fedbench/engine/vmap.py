from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fedbench.data.batch import BatchPrep
from fedbench.engine.local import LocalRule, batch_loss
from fedbench.engine.params import FlatParams
from fedbench.engine.schedule import Schedule
from fedbench.engine.trace import TracedStep


def group_by_steps(steps: list[int], max_pad_fraction: float, max_group_size: int | None = None) -> list[list[int]]:
    """Group clients for batched training so that padding stays small.

    Clients are sorted by step count (descending) and added greedily to the current group while
    the padded work ``len(group) * max(steps)`` exceeds the useful work ``sum(steps)`` by at most
    ``max_pad_fraction`` of the padded work. Returns lists of positions into ``steps``.
    """
    order = sorted(range(len(steps)), key=lambda i: -steps[i])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            g = groups[-1]
            padded = (len(g) + 1) * steps[g[0]]
            useful = sum(steps[j] for j in g) + steps[i]
            full = max_group_size is not None and len(g) >= max_group_size
            if not full and padded - useful <= max_pad_fraction * padded:
                g.append(i)
                continue
        groups.append([i])
    return groups


@contextlib.contextmanager
def detect_fallbacks() -> Iterator[list[str]]:
    """Collect the ops that ``vmap`` ran through its slow per-example fallback inside the block.

    torch silently loops over the batch for ops without a batching rule; this turns on its
    fallback warning and records the op names (e.g. ``aten::renorm``) in the yielded list.
    torch offers no getter for that switch, so on exit it is set back to its default, off.
    """
    toggle = torch._C._functorch._set_vmap_fallback_warning_enabled
    found: list[str] = []
    toggle(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
        for w in caught:
            m = re.search(r"batching rule for (\S+?)\.", str(w.message))
            if m:
                found.append(m.group(1))
    finally:
        toggle(False)


class VmapEngine:
    """All selected clients trained as one batched computation with ``torch.func``.

    Per step, ``vmap(grad_and_value(loss))`` over the stacked client parameters gives every
    client's gradient of its own minibatch loss; minibatches are index gathers ``x[idx]`` with
    ``idx`` of shape ``(clients, batch)``. A short last batch is padded and masked out of the mean;
    a client whose schedule has ended is frozen by a zero step size. Clients are grouped by step
    count (:func:`group_by_steps`) so that little work is padding.

    By default (``trace=True``) a step whose shapes have recurred ``trace_after`` times is traced
    with ``make_fx`` (on fake tensors, so tracing computes nothing) into one graph of plain aten
    ops, gradients and local update together (:class:`TracedStep`). The graph runs the same ops
    without ``torch.func``'s per-op dispatch, and its Linear-layer updates are rewritten to
    accumulate ``bmm(g^T, h)`` straight into the weights or momentum buffers with ``baddbmm_``
    (:func:`fuse_bmm_updates`), so no per-client weight gradient is written. Results equal the
    untraced step's up to float rounding; the 2NN benchmark's step takes about half the time.

    With ``compile=True`` the step (gradients and local update) goes through ``torch.compile``,
    which removes most per-op overhead at the price of a one-time compilation (tens of seconds
    on CPU, cached on disk by torch); worth it for long runs, not for a one-minute one. Compiled
    graphs are specialised to the number of clients, so a compiled engine trains the round's
    clients as one group (padding ragged ones) rather than re-compiling for every group size.
    """

    name = "vmap"

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        rule: LocalRule,
        batch_size: int,
        max_pad_fraction: float = 0.25,
        max_group_size: int | None = None,
        compile: bool = False,
        trace: bool = True,
        trace_after: int = 64,
        prep: BatchPrep | None = None,
    ):
        self.model, self.x, self.y, self.rule, self.batch_size = model, x, y, rule, batch_size
        self.prep = prep or BatchPrep()
        self.layout = FlatParams(model)
        self.max_pad_fraction, self.max_group_size = (1.0 if compile else max_pad_fraction), max_group_size
        self.compiled, self.traced, self.trace_after = compile, trace and not compile, trace_after
        self._train_step = self._make_train_step(compile)

    def _make_train_step(self, compile: bool):
        """``train_step(params, state, xb, yb, mask, step_size, const) -> losses``: one in-place
        local step (:class:`LocalRule`) of every client in a group, through
        ``vmap(grad_and_value(loss))``."""
        model, rule = self.model, self.rule

        def loss(params, xb, yb, mask):
            return batch_loss(functional_call(model, params, (xb,)), yb, mask)

        grads_and_losses = vmap(grad_and_value(loss))

        def train_step(params, state, xb, yb, mask, step_size, const):
            """One local step of every client in the group, in place; returns the losses."""
            grads, losses = grads_and_losses(params, xb, yb, mask)
            plist = list(params.values())
            scale = None if step_size is None else [step_size.view(-1, *([1] * (p.dim() - 1))) for p in plist]
            with torch.no_grad():
                rule.step_(plist, list(grads.values()), state, const, scale)
            return losses.detach()

        if compile:
            return torch.compile(train_step)
        return TracedStep(train_step, self.trace_after) if self.traced else train_step

    def state_dict(self) -> dict:
        """The traced step's call counts (see :meth:`TracedStep.state_dict`); empty otherwise."""
        return {"trace_calls": self._train_step.state_dict()} if self.traced else {}

    def load_state_dict(self, state: dict) -> None:
        if self.traced:
            self._train_step.load_state_dict(state.get("trace_calls", {}))

    def train(
        self, global_params: torch.Tensor, schedules: list[Schedule], const: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local models ``(n, d)`` and mean local losses ``(n,)``; ``const`` ``(n, d)`` holds each
        client's constant term (see :class:`LocalRule`)."""
        out = torch.empty(len(schedules), self.layout.dim, device=global_params.device)
        losses = torch.zeros(len(schedules), device=global_params.device)
        steps = [s.steps for s in schedules]
        for group in group_by_steps(steps, self.max_pad_fraction, self.max_group_size):
            pos = torch.as_tensor(group, device=out.device)
            k = None if const is None else const[pos]
            out[pos], losses[pos] = self._train_group(global_params, [schedules[i] for i in group], k)
        return out, losses

    def _pack(self, schedules: list[Schedule], device: torch.device):
        """A group's schedules as ``index (steps, n, batch)`` (padding -> sample 0), the float
        ``mask`` of real samples, and each client's step count."""
        n, b = len(schedules), self.batch_size
        max_steps = max(s.steps for s in schedules)
        index = np.zeros((max_steps, n, b), np.int64)
        mask = np.zeros((max_steps, n, b), np.float32)
        cols = next((s.aug.shape[-1] for s in schedules if s.aug is not None), 0)  # 3, or 6 with feature skew
        aug = np.zeros((max_steps, n, b, cols), np.int64) if cols else None
        for c, s in enumerate(schedules):
            valid = s.index >= 0
            index[: s.steps, c] = np.where(valid, s.index, 0)
            mask[: s.steps, c] = valid
            if aug is not None and s.aug is not None:  # an empty client's schedule has no rows
                aug[: s.steps, c] = s.aug
        index_t = torch.as_tensor(index, device=self.x.device)
        mask_t = torch.as_tensor(mask, device=device)
        aug_t = None if aug is None else torch.as_tensor(aug, device=self.x.device)
        client_steps = torch.as_tensor([s.steps for s in schedules], device=device)
        return index_t, mask_t, aug_t, client_steps, max_steps

    def _inputs(self, idx: torch.Tensor, aug: torch.Tensor | None) -> torch.Tensor:
        """The model inputs of one step for every client of the group, ``(n, b, ...)``."""
        n, b = idx.shape
        flat = self.prep(self.x[idx].flatten(0, 1), None if aug is None else aug.flatten(0, 1))
        return flat.view(n, b, *flat.shape[1:])

    def _train_group(self, global_params: torch.Tensor, schedules: list[Schedule], const: torch.Tensor | None):
        n, device = len(schedules), global_params.device
        index_t, mask_t, aug_t, client_steps, max_steps = self._pack(schedules, device)

        params = self.layout.unflatten_stacked(global_params.expand(n, -1))
        state = self.rule.init(list(params.values()))
        k = None if const is None else list(self.layout.unflatten_stacked(self.rule.prepare(const)).values())
        total = torch.zeros(n, device=device)
        ragged = bool((client_steps != max_steps).any())
        for s in range(max_steps):
            idx = index_t[s]
            active = (client_steps > s).to(global_params.dtype)
            step_size = -self.rule.lr * active if ragged or self.compiled else None
            xb = self._inputs(idx, None if aug_t is None else aug_t[s])
            loss = self._train_step(params, state, xb, self.y[idx], mask_t[s], step_size, k)
            total += loss * active
        return self.layout.flatten_stacked(params), total / client_steps.clamp_min(1)
