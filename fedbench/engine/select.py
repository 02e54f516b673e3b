"""``engine`` config group: which engine trains the round's clients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedbench.data.batch import BatchPrep
from fedbench.engine.local import LocalRule
from fedbench.engine.sequential import SequentialEngine
from fedbench.engine.vmap import VmapEngine
from fedbench.registry import integer, number, option, register

ENGINES = ("auto", "vmap", "sequential")


@register("engine", "sequential")
@register("engine", "vmap")
@register("engine", "auto")
@dataclass
class EngineConfig:
    name: str = "auto"
    max_pad_fraction: float = option(0.25, number(0, 1, max_open=True))
    max_group_size: int | None = option(None, integer(1, nullable=True))
    compile: bool = False
    trace: bool = True
    trace_after: int = option(64, integer(0))


def model_supported(model: nn.Module) -> tuple[bool, str]:
    """Whether fedbench's engines can train ``model``, and why not.

    Buffers (BatchNorm running statistics and the like) change during local training, and
    federating them needs a decision (average them? keep them local, as FedBN does?) that no
    engine makes: such a model is refused rather than trained wrongly. GroupNorm normalises
    without running statistics and is the fix.
    """
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return False, (
            f"the model has buffers ({', '.join(buffers[:3])}), e.g. BatchNorm running statistics, which fedbench "
            "does not federate; use a buffer-free model (GroupNorm instead of BatchNorm: model.norm=group)"
        )
    return True, ""


def make_engine(
    name: str,
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
) -> tuple[SequentialEngine | VmapEngine, str]:
    """Build engine ``name``; returns ``(engine, note)``, the note saying what ``auto`` chose.

    Both engines run the same local rule and accept the same models and algorithms, so ``auto``
    always takes ``vmap``, the faster one: it batches the round's clients into one computation.
    """
    if name not in ENGINES:
        raise ValueError(f"engine.name={name!r} is not allowed; use one of {', '.join(ENGINES)}")
    ok, why = model_supported(model)
    if not ok:
        raise ValueError(f"engine.name={name}: cannot train this model: {why}")
    if name == "sequential":
        return SequentialEngine(model, x, y, rule, prep), ""
    note = "the round's clients train as one batched computation (torch.func.vmap)" if name == "auto" else ""
    engine = VmapEngine(
        model, x, y, rule, batch_size, max_pad_fraction, max_group_size, compile, trace, trace_after, prep
    )
    return engine, note
