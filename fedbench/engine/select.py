from __future__ import annotations

import torch
from torch import nn

from fedbench.engine.fused import FusedEngine, fused_supported
from fedbench.engine.local import LocalSGD
from fedbench.engine.sequential import SequentialEngine
from fedbench.engine.vmap import VmapEngine

ENGINES = ("auto", "vmap", "sequential", "fused")


def vmap_supported(model: nn.Module) -> tuple[bool, str]:
    """Whether the vmap engine can train ``model``, and why not.

    Buffers (BatchNorm running statistics and the like) change during training in ways that
    ``functional_call`` over stacked parameters cannot carry per client.
    """
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return False, f"model has buffers ({', '.join(buffers[:3])}); vmap needs a buffer-free model"
    return True, ""


def make_engine(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    local: LocalSGD,
    max_pad_fraction: float = 0.25,
    max_group_size: int | None = None,
    compile: bool = False,
    trace: bool = True,
    trace_after: int = 64,
) -> tuple[SequentialEngine | VmapEngine, str]:
    """Build engine ``name``; returns ``(engine, note)``, the note saying what ``auto`` chose and why.

    ``auto`` takes the fastest engine that can train the model: ``fused`` for Linear/ReLU
    networks (unless ``compile`` asks for the compiled vmap step), else ``vmap`` for buffer-free
    models, else ``sequential``.
    """
    if name not in ENGINES:
        raise ValueError(f"engine.name={name!r} is not allowed; use one of {', '.join(ENGINES)}")
    fused_ok, fused_why = fused_supported(model)
    if name == "fused" and not fused_ok:
        raise ValueError(f"engine.name=fused cannot train this model: {fused_why}")
    if name == "fused" or (name == "auto" and fused_ok and not compile):
        note = "Linear/ReLU model: fused batched backward" if name == "auto" else ""
        return FusedEngine(model, x, y, local, max_pad_fraction, max_group_size), note
    ok, why = vmap_supported(model)
    if name == "vmap" and not ok:
        raise ValueError(f"engine.name=vmap cannot train this model: {why}")
    if name == "sequential" or (name == "auto" and not ok):
        return SequentialEngine(model, x, y, local), why
    return VmapEngine(model, x, y, local, max_pad_fraction, max_group_size, compile, trace, trace_after), ""
