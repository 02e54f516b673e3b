"""The one local-training rule every engine runs: the loss and the SGD step with its terms.

A local step moves each client's weights ``w`` along a direction built from small pieces, each
adding one term (optax's ``chain`` over stacked tensor lists, done in place)::

    d = g + coef * w + k_i          (gradient, linear term, per-client constant)
    b <- momentum * b + d           (if momentum > 0; buffers start at zero each round)
    w <- w - lr * b   (or d)

``coef * w + k_i`` is the linear correction an algorithm adds to its clients' gradients, with
weight decay folded in: FedProx ``mu (w - w0)`` is ``coef = mu, k_i = -mu w0``; SCAFFOLD
``c - c_i`` is ``coef = 0, k_i = c - c_i``; FedDyn ``-h_i + alpha (w - w0)`` is
``coef = alpha, k_i = -h_i - alpha w0``; weight decay adds ``weight_decay`` to ``coef``. Without
terms and momentum this is ``torch.optim.SGD``'s rule.

Every term is added into its target (the weights, or the momentum buffers) by its own in-place
op, and the gradient term comes last and alone: each gradient is read exactly once, so a traced
step can accumulate a Linear layer's gradient ``g^T h`` straight into the target with
``baddbmm_`` (:func:`fedbench.engine.trace.fuse_bmm_updates`) whatever terms the algorithm adds.

Without momentum, the linear and constant terms together are a pull towards an anchor:
``w - lr (coef w + k) = lerp(w, a, lr coef)`` with ``a = -k / coef`` (FedProx's anchor is the
global model). :meth:`LocalRule.prepare` turns the constants into anchors once per round, and
the step makes one pass over the weights (``_foreach_lerp_``) instead of two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensors = list[torch.Tensor]
Scale = float | Tensors  # -lr, or one broadcastable tensor per parameter (-lr per client, 0 when done)
# A term adds ``alpha * term`` into ``target`` in place: term(target, alpha, params, grads, const).
Term = Callable[[Tensors, Scale, Tensors, Tensors, Tensors | None], None]


@dataclass(frozen=True)
class LocalSGD:
    """Client-side SGD hyper-parameters and the minibatch schedule's size (see
    :func:`fedbench.engine.schedule.make_schedule`): ``local_epochs`` passes in minibatches of
    ``batch_size``, or exactly ``local_steps`` minibatches when that is set."""

    lr: float
    batch_size: int
    local_epochs: int = 1
    local_steps: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sample. Written out rather than ``F.cross_entropy``: its vmap
    batching rule is much slower on CPU, and every engine must compute the same thing."""
    return -logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def batch_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The local objective's data term: mean cross-entropy over the batch's real samples
    (``mask`` 1 for real, 0 for padding)."""
    losses = per_sample_loss(logits, y)
    if mask is None:
        return losses.mean()
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)


def _acc_(target: Tensors, x: Tensors, alpha: Scale) -> None:
    """``target += alpha * x`` with a scalar or a per-parameter tensor ``alpha``."""
    if isinstance(alpha, list):
        torch._foreach_addcmul_(target, x, alpha)
    else:
        torch._foreach_add_(target, x, alpha=alpha)


def linear_term(coef: float) -> Term:
    """``coef * w`` (weight decay, FedProx's and FedDyn's ``mu w`` / ``alpha w``)."""

    def add_(target, alpha, params, grads, const):
        if target is params:  # w + a c w: scale the weights, never read them twice
            if isinstance(alpha, list):
                torch._foreach_addcmul_(params, params, [a * coef for a in alpha])
            else:
                torch._foreach_mul_(params, 1 + alpha * coef)
        else:
            _acc_(target, params, [a * coef for a in alpha] if isinstance(alpha, list) else alpha * coef)

    return add_


def constant_term(target, alpha, params, grads, const) -> None:
    """``k_i``, the per-client constant (SCAFFOLD's ``c - c_i``, ``-mu w0``, ...)."""
    _acc_(target, const, alpha)


def pull_term(coef: float) -> Term:
    """``coef * w + k_i`` as ``coef * (w - a_i)`` with anchor ``a_i = -k_i / coef``, on the
    weights only: ``w + alpha coef (w - a) = lerp(w, a, -alpha coef)``."""

    def add_(target, alpha, params, grads, anchor):
        weight = [-a * coef for a in alpha] if isinstance(alpha, list) else -alpha * coef
        torch._foreach_lerp_(params, anchor, weight)

    return add_


def gradient_term(target, alpha, params, grads, const) -> None:
    """``g``, the minibatch gradient; last, and its only reader (so traced steps fuse it)."""
    _acc_(target, grads, alpha)


@dataclass(frozen=True)
class LocalRule:
    """One local SGD step over stacked tensor lists: the terms, then momentum, then the step.

    ``coef`` is ``weight_decay`` plus the algorithm's linear coefficient; ``constant`` says
    whether the algorithm supplies per-client constants ``k_i``. Built once per run, so a term
    that is zero is not in the chain at all (and not in a traced graph).
    """

    lr: float
    momentum: float = 0.0
    coef: float = 0.0
    constant: bool = False

    @property
    def pulls(self) -> bool:
        """Whether the linear and constant terms run as one pull towards an anchor (no momentum)."""
        return bool(self.coef and self.constant and not self.momentum)

    @property
    def terms(self) -> list[Term]:
        if self.pulls:
            return [pull_term(self.coef), gradient_term]
        return [
            *([linear_term(self.coef)] if self.coef else []),
            *([constant_term] if self.constant else []),
            gradient_term,
        ]

    def prepare(self, const: torch.Tensor | None) -> torch.Tensor | None:
        """The per-round operand of :meth:`step_` from the clients' constants ``k_i`` (any shape):
        the anchors ``-k_i / coef`` when the rule pulls, else ``k_i`` itself."""
        if const is None or not self.pulls:
            return const
        return const / -self.coef

    def init(self, params: Tensors) -> Tensors | None:
        """The step's state: momentum buffers (zero), or None."""
        return [torch.zeros_like(p) for p in params] if self.momentum else None

    def step_(
        self,
        params: Tensors,
        grads: Tensors,
        state: Tensors | None,
        const: Tensors | None = None,
        scale: Tensors | None = None,
    ) -> None:
        """Update ``params`` (and ``state``) in place. ``const`` is the clients' constant term as
        returned by :meth:`prepare`. ``scale`` replaces ``-lr``: one tensor per parameter
        broadcastable to it, ``-lr`` for clients still training and ``0`` for clients whose
        schedule has ended."""
        if self.constant and const is None:
            raise ValueError("this rule adds a per-client constant: pass const")
        alpha: Scale = -self.lr if scale is None else scale
        if self.momentum:
            torch._foreach_mul_(state, self.momentum)
            for term in self.terms:
                term(state, 1.0, params, grads, const)
            _acc_(params, state, alpha)
        else:
            for term in self.terms:
                term(params, alpha, params, grads, const)
