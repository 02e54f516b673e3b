"""What every algorithm shares: the local optimizer's keys and the hooks around local training.

An algorithm changes FedAvg in a few places, each a hook of :class:`Algorithm` with FedAvg's
behaviour as default:

- the local objective's linear correction, ``coef * (w - w0)``-style terms folded into
  :class:`~fedbench.engine.local.LocalRule`'s ``coef`` and per-client constants ``k_i``
  (:meth:`Algorithm.local_constant`);
- what the server sends besides the model (:meth:`Algorithm.broadcast_payloads`);
- what a client does after local training: update its state, add uploads, set its aggregation
  weight (:meth:`Algorithm.after_local`);
- the server's algorithm-specific step on the aggregate (:meth:`Algorithm.server_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from fedbench.engine.local import LocalSGD
from fedbench.registry import integer, number, option

if TYPE_CHECKING:
    from fedbench.round import RoundRecord
    from fedbench.simulation import Simulation


@dataclass
class LocalConfig:
    """The local optimizer's keys, shared by every algorithm (``algorithm=fedavg`` has only these)."""

    name: str = "fedavg"
    local_epochs: int = option(1, integer(1))
    local_steps: int | None = option(None, integer(1, nullable=True))
    batch_size: int = option(10, integer(1))
    lr: float = option(0.05, number(min=0))
    momentum: float = option(0.0, number(0, 1, max_open=True))
    weight_decay: float = option(0.0, number(min=0))
    moved: ClassVar[dict[str, str]] = {"server_lr": "server_opt.lr", "server_momentum": "server_opt.momentum"}

    def local_sgd(self) -> LocalSGD:
        return LocalSGD(self.lr, self.batch_size, self.local_epochs, self.local_steps, self.momentum, self.weight_decay)


class Algorithm:
    """FedAvg (McMahan et al. 2017): local SGD, sample-weighted mean of the updates.

    Subclasses override the hooks they need; server-side state lives in ``self.state`` (a dict
    of tensors), per-client state in ``sim.client_state``: both are what a checkpoint saves.
    """

    coef: float = 0.0  # linear coefficient of the local term, added to weight decay
    constant: bool = False  # whether local_constant returns per-client constants

    def __init__(self, cfg: LocalConfig):
        self.cfg = cfg
        self.state: dict[str, torch.Tensor] = {}

    def init(self, sim: Simulation) -> None:
        """Allocate server-side state once the model's size is known."""

    def broadcast_payloads(self, sim: Simulation) -> dict[str, torch.Tensor]:
        """Tensors sent to every selected client besides the model (counted as downlink bytes)."""
        return {}

    def local_constant(self, sim: Simulation, record: RoundRecord, w0: torch.Tensor) -> torch.Tensor | None:
        """Each client's constant ``k_i`` of the local term, ``(n, d)``, or None."""
        return None

    def after_local(self, sim: Simulation, record: RoundRecord, w0: torch.Tensor) -> dict[str, float]:
        """Client-side work after local training (state, payloads, weights); returns metrics."""
        return {}

    def server_step(
        self, sim: Simulation, record: RoundRecord, aggregate: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The algorithm's server-side step on the aggregated update; returns it and metrics."""
        return aggregate, {}

    def rows(self, sim: Simulation, record: RoundRecord, name: str) -> torch.Tensor:
        """The round's clients' rows of per-client state ``name`` ``(n, d)`` on the compute device,
        read from the store once per round and kept on the record."""
        if name not in record.client_rows:
            record.client_rows[name] = sim.client_state.get(name, record.clients, sim.layout.dim, sim.device)
        return record.client_rows[name]

    def set_rows(self, sim: Simulation, record: RoundRecord, name: str, values: torch.Tensor) -> None:
        """Write the round's clients' rows of ``name`` to the store (and the record's copy)."""
        record.client_rows[name] = values
        sim.client_state.set(name, record.clients, values)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
