"""Client engines: train the round's selected clients from the same global model.

An engine takes the global parameters as one flat vector and each client's minibatch schedule,
and returns the clients' local parameters stacked as ``(n_clients, d)`` with their mean local
loss. All engines implement the same local SGD (see :mod:`fedbench.engine.local`), so
they give the same models up to float rounding.

- ``sequential``: one model object; clients one after another; parameters live in one flat
  buffer, so "load the global model" is a single in-place copy.
- ``vmap``: all clients at once with ``torch.func`` (``functional_call`` + ``vmap(grad)``);
  clients with unequal step counts are grouped and masked.
- ``fused``: for Linear/ReLU networks (logreg, MLPs) only: the vmap engine's batching with a
  hand-written backward pass that adds each step straight into the stacked weights, never writing
  per-client gradients; several times faster than ``vmap`` on CPU.
"""

from fedbench.engine.fused import FusedEngine, fused_supported
from fedbench.engine.local import LocalSGD, Schedule, make_schedule
from fedbench.engine.params import FlatParams
from fedbench.engine.select import make_engine, vmap_supported
from fedbench.engine.sequential import SequentialEngine
from fedbench.engine.vmap import VmapEngine, detect_fallbacks, group_by_steps

__all__ = [
    "FlatParams",
    "FusedEngine",
    "LocalSGD",
    "Schedule",
    "SequentialEngine",
    "VmapEngine",
    "detect_fallbacks",
    "fused_supported",
    "group_by_steps",
    "make_engine",
    "make_schedule",
    "vmap_supported",
]
