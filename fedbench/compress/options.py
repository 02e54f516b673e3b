"""The ``uplink`` and ``downlink`` config groups: which codec carries the clients' updates to the
server, and the global model to the clients.

``uplink=none|fp16|bf16|topk`` (``topk``: ``fraction`` or ``k``, ``index_coding``);
``downlink=none|fp16|bf16``. ``none`` is fp32 (4 bytes per value). The codec's byte count is
what the round's ``uplink_bytes`` / ``downlink_bytes`` report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedbench.compress.cast import BF16, FP16
from fedbench.compress.topk import INDEX_CODINGS, TopK
from fedbench.registry import integer, number, one_of, option, register


def _none(cfg: Any) -> None:
    return None


@register("uplink", "none", impl=_none)
@dataclass
class UplinkNone:
    name: str = "none"


@register("uplink", "fp16", impl=lambda cfg: FP16())
@dataclass
class UplinkFP16:
    name: str = "fp16"


@register("uplink", "bf16", impl=lambda cfg: BF16())
@dataclass
class UplinkBF16:
    name: str = "bf16"


@register("uplink", "topk", impl=lambda cfg: TopK(cfg.fraction if cfg.k is None else None, cfg.k, cfg.index_coding))
@dataclass
class UplinkTopK:
    name: str = "topk"
    fraction: float = option(0.01, number(0, 1, min_open=True))
    k: int | None = option(None, integer(1, nullable=True, note=" (null: from fraction)"))
    index_coding: str = option("varint", one_of(*INDEX_CODINGS))


@register("downlink", "none", impl=_none)
@dataclass
class DownlinkNone:
    name: str = "none"


@register("downlink", "fp16", impl=lambda cfg: FP16())
@dataclass
class DownlinkFP16:
    name: str = "fp16"


@register("downlink", "bf16", impl=lambda cfg: BF16())
@dataclass
class DownlinkBF16:
    name: str = "bf16"
