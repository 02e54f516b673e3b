"""Per-client state that lives across rounds (SCAFFOLD controls, FedDyn gradients, later
error-feedback residuals), owned by the simulation.

Rows are allocated lazily, the first time a client's state is written, so memory grows with the
clients that took part, not with the clients registered: 100,000 registered clients of which 1,000
ever trained cost 1,000 rows. A client that sits out a round keeps its rows unchanged; a client never
written reads as zeros. Rows live on ``device`` (CPU by default, so a large population fits in host
memory) and move to the compute device only for the round's clients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class ClientState:
    """Named ``(d,)``-row tables keyed by client id: ``get(name, ids) -> (n, d)``, ``set``."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._rows: dict[str, dict[int, int]] = {}  # name -> client id -> row
        self._data: dict[str, torch.Tensor] = {}  # name -> (capacity, d)

    def get(self, name: str, clients: np.ndarray, dim: int, device: torch.device | str) -> torch.Tensor:
        """The rows of ``clients`` (zeros for clients never written), on ``device``: a new tensor."""
        rows = self._rows.get(name, {})
        if len(clients) and all(int(c) in rows for c in clients):
            idx = torch.as_tensor([rows[int(c)] for c in clients], device=self.device)
            return self._data[name].index_select(0, idx).to(device)
        out = torch.zeros(len(clients), dim, device=device)
        have = [(i, rows[int(c)]) for i, c in enumerate(clients) if int(c) in rows]
        if have:
            pos, idx = zip(*have)
            out[torch.as_tensor(pos, device=device)] = self._data[name][torch.as_tensor(idx)].to(device)
        return out

    def set(self, name: str, clients: np.ndarray, values: torch.Tensor) -> None:
        """Write ``values[i]`` as client ``clients[i]``'s row of ``name``."""
        rows = self._rows.setdefault(name, {})
        new = [int(c) for c in clients if int(c) not in rows]
        if new:
            self._grow(name, len(rows) + len(new), values.shape[1])
            for c in new:
                rows[c] = len(rows)
        idx = torch.as_tensor([rows[int(c)] for c in clients])
        self._data[name][idx] = values.detach().to(self.device, torch.float32)

    def _grow(self, name: str, needed: int, dim: int) -> None:
        data = self._data.get(name)
        if data is None or data.shape[0] < needed:
            cap = max(needed, 2 * (0 if data is None else data.shape[0]), 8)
            grown = torch.zeros(cap, dim, device=self.device)
            if data is not None:
                grown[: data.shape[0]] = data
            self._data[name] = grown

    def clients(self, name: str) -> list[int]:
        """The clients that have a row of ``name``."""
        return sorted(self._rows.get(name, {}))

    def nbytes(self) -> int:
        """Bytes of the rows in use (what a checkpoint of this store holds)."""
        return sum(len(self._rows[n]) * self._data[n].shape[1] * self._data[n].element_size() for n in self._data)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and ints only (``torch.load(weights_only=True)`` reads it back)."""
        out: dict[str, Any] = {}
        for name, rows in self._rows.items():
            ids = sorted(rows)
            out[name] = {
                "clients": torch.as_tensor(ids, dtype=torch.int64),
                "rows": self._data[name][torch.as_tensor([rows[c] for c in ids], dtype=torch.int64)].cpu(),
            }
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rows, self._data = {}, {}
        for name, entry in state.items():
            self.set(name, entry["clients"].numpy(), entry["rows"])
