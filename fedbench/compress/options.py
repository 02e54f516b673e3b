"""The ``uplink`` and ``downlink`` config groups: which codec carries the clients' updates to the
server, and the global model to the clients.

``uplink=none|fp16|bf16|topk|randk|threshold|qsgd|uniform|terngrad|sign|sign_majority|powersgd|stc``
(see each codec's module for its keys and wire format; every lossy uplink option but
``sign_majority``: ``error_feedback`` in ``none``, ``ef``, ``ef21``, see
:mod:`fedbench.compress.feedback`). ``downlink`` has the same options but ``sign_majority``:
``fp16``/``bf16`` send the model itself, the other lossy ones the model's delta, with the same keys
plus ``cache_rounds`` (:mod:`fedbench.compress.downlink`). ``none`` is fp32 (4 bytes per value).
The codec's byte count is what the round's ``uplink_bytes`` / ``downlink_bytes`` report.
"""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Any

from fedbench.compress.cast import BF16, FP16
from fedbench.compress.powersgd import PowerSGD
from fedbench.compress.quantize import QSGD, TernGrad, Uniform
from fedbench.compress.randk import RandK
from fedbench.compress.sign import MajoritySign, ScaledSign
from fedbench.compress.stc import STC
from fedbench.compress.threshold import Threshold
from fedbench.compress.topk import INDEX_CODINGS, TopK
from fedbench.registry import integer, number, one_of, option, register

ERROR_FEEDBACK = ("none", "ef", "ef21")


@dataclass
class Lossy:
    """The key every lossy option has (on the downlink, the casts send the model and have none)."""

    name: str = ""
    error_feedback: str = option("none", one_of(*ERROR_FEEDBACK))


def both(name: str, impl: Any):
    """Class decorator: register ``schema`` as uplink option ``name`` and, with ``cache_rounds``
    added, as downlink option ``name`` (a delta scheme, :mod:`fedbench.compress.downlink`)."""

    def wrap(schema: type) -> type:
        register("uplink", name, impl=impl)(schema)
        cache = option(None, integer(1, nullable=True, note=" (null: every message since the client's last copy)"))
        down = make_dataclass(
            schema.__name__.replace("Uplink", "Downlink"), [("cache_rounds", int | None, cache)], bases=(schema,)
        )
        down.__module__ = __name__
        register("downlink", name, impl=impl)(down)
        return schema

    return wrap


def _k(cfg: Any) -> tuple[float | None, int | None]:
    """``(fraction, k)`` of a sparsifier: a set ``k`` overrides ``fraction``."""
    return (cfg.fraction if cfg.k is None else None), cfg.k


# Casts, the same in both directions: name -> codec builder (None sends fp32).
_PLAIN = {"none": lambda cfg: None, "fp16": lambda cfg: FP16(), "bf16": lambda cfg: BF16()}
for _group in ("uplink", "downlink"):
    for _name, _impl in _PLAIN.items():
        _base = (Lossy,) if _group == "uplink" and _name != "none" else ()
        _schema = make_dataclass(f"{_group.title()}{_name.upper()}", [("name", str, _name)], bases=_base)
        _schema.__module__ = __name__
        register(_group, _name, impl=_impl)(_schema)


@both("topk", impl=lambda cfg: TopK(*_k(cfg), cfg.index_coding))
@dataclass
class UplinkTopK(Lossy):
    name: str = "topk"
    fraction: float = option(0.01, number(0, 1, min_open=True))
    k: int | None = option(None, integer(1, nullable=True, note=" (null: from fraction)"))
    index_coding: str = option("varint", one_of(*INDEX_CODINGS))


@both("randk", impl=lambda cfg: RandK(*_k(cfg), cfg.shared_seed, cfg.unbiased))
@dataclass
class UplinkRandK(Lossy):
    name: str = "randk"
    fraction: float = option(0.01, number(0, 1, min_open=True))
    k: int | None = option(None, integer(1, nullable=True, note=" (null: from fraction)"))
    shared_seed: bool = True  # indices from randomness client and server share: the message is the values only
    unbiased: bool = False  # scale the kept values by d / k


@both("threshold", impl=lambda cfg: Threshold(cfg.threshold))
@dataclass
class UplinkThreshold(Lossy):
    name: str = "threshold"
    threshold: float = option(1e-3, number(min=0))


@both("qsgd", impl=lambda cfg: QSGD(cfg.levels, cfg.coding))
@dataclass
class UplinkQSGD(Lossy):
    name: str = "qsgd"
    levels: int = option(16, integer(1))
    coding: str = option("elias", one_of("elias", "fixed"))


@both("uniform", impl=lambda cfg: Uniform(cfg.bits))
@dataclass
class UplinkUniform(Lossy):
    name: str = "uniform"
    bits: int = option(8, (lambda v: v is not None and 1 <= v <= 16, "an integer in [1, 16]"))


@both("terngrad", impl=lambda cfg: TernGrad())
@dataclass
class UplinkTernGrad(Lossy):
    name: str = "terngrad"


@both("sign", impl=lambda cfg: ScaledSign())
@dataclass
class UplinkSign(Lossy):
    name: str = "sign"


@register("uplink", "sign_majority", impl=lambda cfg: MajoritySign(cfg.scale))
@dataclass
class UplinkSignMajority:
    """No ``error_feedback``: the server's step is the vote, not a decoded update to correct."""

    name: str = "sign_majority"
    scale: float = option(0.001, number(0, min_open=True))

    def check(self, run: Any) -> str | None:
        if run.aggregator.name != "mean" or run.aggregator.pre:
            return (
                f"uplink=sign_majority: the server takes the elementwise majority of the signs, so it replaces the "
                f"aggregator; got aggregator={run.aggregator.name} pre={run.aggregator.pre}; allowed: aggregator=mean"
            )
        return None


@both("powersgd", impl=lambda cfg: lambda shapes: PowerSGD(shapes, cfg.rank, cfg.min_compression))
@dataclass
class UplinkPowerSGD(Lossy):
    """Built per model: the impl takes the model's parameter shapes (``Simulation`` passes them).
    Each client's last ``Q`` (the warm start) is a row of the per-client store, ``uplink_powersgd``."""

    name: str = "powersgd"
    rank: int = option(1, integer(1))
    min_compression: float = option(1.0, number(min=0))  # compress a matrix iff m n > min_compression r (m + n)
    error_feedback: str = option("ef", one_of(*ERROR_FEEDBACK))  # the paper's setting


@both("stc", impl=lambda cfg: STC(*_k(cfg)))
@dataclass
class UplinkSTC(Lossy):
    """Sparse ternary compression (Sattler et al. 2019), with the paper's residual accumulation
    (``error_feedback=ef``) on by default; on the downlink, the server's residual."""

    name: str = "stc"
    fraction: float = option(0.01, number(0, 1, min_open=True))
    k: int | None = option(None, integer(1, nullable=True, note=" (null: from fraction)"))
    error_feedback: str = option("ef", one_of(*ERROR_FEEDBACK))
