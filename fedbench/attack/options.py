"""The ``attack`` config group: the threat model and the attack Byzantine clients run.

``attack=none`` (default) has no Byzantine clients. Every other option shares the threat model:

- ``num_byzantine`` Byzantine clients (or, when it is null, ``floor(fraction * num_clients)``),
  chosen once from the ``byzantine`` stream; they are sampled like everyone else and act only in
  the rounds they are selected;
- ``omniscient``: the attackers see the round's honest updates (as ALIE, IPM and min-max assume);
  when false they estimate from their own honestly trained updates. Attackers collude: one call
  of the attack gives all of the round's Byzantine rows.

Data poisoning (``label_flip``, ``backdoor``) changes what the Byzantine clients train on
(:mod:`fedbench.attack.poison`); model poisoning replaces their updates after local training and
before the uplink codec (:class:`fedbench.attack.stage.AttackStage`), so with compression on
what they send is a valid message of the codec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from fedbench.registry import integer, number, one_of, option, register
from fedbench.rng import torch_generator


class AttackContext(NamedTuple):
    """What the round tells an attack besides its reference updates."""

    round: int
    n: int  # clients selected this round
    reference: torch.Tensor  # (n_h, d): the honest updates, or the attackers' own
    seed: int
    aggregator: Any  # the deployed rule, (n, d) -> (d,)


def _nullable_fraction(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1)


@dataclass
class ThreatModel:
    """The keys every attack has."""

    name: str = "sign_flip"
    num_byzantine: int | None = option(None, integer(0, nullable=True, note=" (null: from fraction)"))
    fraction: float | None = option(0.2, (_nullable_fraction, "a number in [0, 1]"))
    omniscient: bool = True
    kind: ClassVar[str] = "model"  # "model": replaces updates; "labels" / "backdoor": poisons data

    def count(self, num_clients: int) -> int:
        """How many of the ``num_clients`` clients are Byzantine."""
        if self.num_byzantine is not None:
            return self.num_byzantine
        return int(math.floor(self.fraction * num_clients + 1e-9))

    def check(self, run: Any) -> str | None:
        if self.num_byzantine is not None and self.num_byzantine > run.num_clients:
            return (
                f"attack.num_byzantine={self.num_byzantine}: more than num_clients={run.num_clients}; "
                "allowed: 0 <= attack.num_byzantine <= num_clients"
            )
        return None

    def arguments(self, ctx: AttackContext) -> dict[str, Any]:
        """The keyword arguments of ``fedbench.attack.<name>``: the option's own keys (those beyond
        the threat model), and whatever it needs from the round."""
        shared = {"name", "num_byzantine", "fraction", "omniscient"}
        return {k: v for k, v in vars(self).items() if k not in shared}


@register("attack", "none")
@dataclass
class NoAttack(ThreatModel):
    """No attack. Setting ``num_byzantine`` (or ``fraction``) marks that many clients as Byzantine
    who behave honestly: the baseline of a sweep over attacks, with the same aggregator ``f``, and
    a detecting rule's chance level (its detection metrics when the marked clients are honest)."""

    name: str = "none"
    fraction: float | None = option(0.0, (_nullable_fraction, "a number in [0, 1]"))
    kind: ClassVar[str] = "none"


@register("attack", "label_flip")
@dataclass
class LabelFlip(ThreatModel):
    name: str = "label_flip"
    target: int | None = option(None, integer(0, nullable=True, note=" (null: y -> C - 1 - y)"))
    kind: ClassVar[str] = "labels"


@register("attack", "backdoor")
@dataclass
class Backdoor(ThreatModel):
    name: str = "backdoor"
    target: int = option(0, integer(0))
    trigger_size: int = option(3, integer(1))
    poison_fraction: float = option(0.5, number(0, 1, min_open=True))
    boost: float = option(1.0, number(min=0))  # model replacement (Bagdasaryan et al. 2020): scale the update
    kind: ClassVar[str] = "backdoor"


@register("attack", "sign_flip")
@dataclass
class SignFlip(ThreatModel):
    name: str = "sign_flip"
    scale: float = option(1.0, number(min=0))


@register("attack", "gaussian")
@dataclass
class Gaussian(ThreatModel):
    name: str = "gaussian"
    mean: float = option(0.0, number())
    std: float = option(1.0, number(min=0))

    def arguments(self, ctx: AttackContext) -> dict[str, Any]:
        gen = torch_generator(ctx.seed, "attack", ctx.round, device=ctx.reference.device)
        return {**super().arguments(ctx), "generator": gen}


@register("attack", "large")
@dataclass
class Large(ThreatModel):
    name: str = "large"
    scale: float = option(1e6, number(min=0))


@register("attack", "nonfinite")
@dataclass
class NonFinite(ThreatModel):
    name: str = "nonfinite"
    value: str = option("nan", one_of("nan", "inf", "-inf"))


@register("attack", "alie")
@dataclass
class Alie(ThreatModel):
    name: str = "alie"
    z: float | None = option(None, (lambda v: v is None or math.isfinite(v), "null (the paper's z) or a number"))

    def arguments(self, ctx: AttackContext) -> dict[str, Any]:
        return {**super().arguments(ctx), "n": ctx.n}  # the paper's z is a function of the round's n


@register("attack", "ipm")
@dataclass
class Ipm(ThreatModel):
    name: str = "ipm"
    epsilon: float = option(0.1, number(min=0))


@register("attack", "minmax")
@dataclass
class MinMax(ThreatModel):
    name: str = "minmax"
    perturbation: str = option("unit", one_of("unit", "std", "sign"))


@register("attack", "minsum")
@dataclass
class MinSum(MinMax):
    name: str = "minsum"


@register("attack", "mimic")
@dataclass
class Mimic(ThreatModel):
    name: str = "mimic"
    target: int = option(0, integer(0, note=" (row of the round's honest updates; wraps around)"))

    def arguments(self, ctx: AttackContext) -> dict[str, Any]:
        return {"target": self.target % len(ctx.reference)}


class _Adaptive(ThreatModel):
    """Searches its scale against the deployed aggregator."""

    def arguments(self, ctx: AttackContext) -> dict[str, Any]:
        return {**super().arguments(ctx), "aggregator": ctx.aggregator}


@register("attack", "alie_adaptive")
@dataclass
class AlieAdaptive(_Adaptive):
    name: str = "alie_adaptive"


@register("attack", "ipm_adaptive")
@dataclass
class IpmAdaptive(_Adaptive):
    name: str = "ipm_adaptive"
