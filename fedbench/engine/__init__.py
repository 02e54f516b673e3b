"""Client engines: train the round's selected clients from the same global model.

An engine takes the global parameters as one flat vector, each client's minibatch schedule and
each client's constant term, and returns the clients' local parameters stacked as
``(n_clients, d)`` with their mean local loss. Every engine runs the same loss and the same
local rule (:mod:`fedbench.engine.local`); they differ only in how they batch clients, so they
give the same models up to float rounding.

- ``sequential``: one model object; clients one after another; parameters live in one flat
  buffer, so "load the global model" is a single in-place copy.
- ``vmap``: all clients at once with ``torch.func`` (``functional_call`` + ``vmap(grad)``);
  clients with unequal step counts are grouped and masked; recurring steps run as traced graphs
  whose Linear updates are fused (:mod:`fedbench.engine.trace`).
"""

from fedbench.engine.local import LocalRule, LocalSGD, batch_loss, per_sample_loss
from fedbench.engine.params import FlatParams
from fedbench.engine.schedule import Schedule, make_schedule
from fedbench.engine.select import EngineConfig, make_engine, model_supported
from fedbench.engine.sequential import SequentialEngine
from fedbench.engine.vmap import VmapEngine, detect_fallbacks, group_by_steps

__all__ = [
    "EngineConfig",
    "FlatParams",
    "LocalRule",
    "LocalSGD",
    "Schedule",
    "SequentialEngine",
    "VmapEngine",
    "batch_loss",
    "detect_fallbacks",
    "group_by_steps",
    "make_engine",
    "make_schedule",
    "model_supported",
    "per_sample_loss",
]
