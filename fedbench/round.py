"""The round record: what travels through a round's stages.

One record per round. ``local_train`` fills it; every later stage reads it and adds what it
produced, so what a stage did (bytes it put on the wire, clients it flagged) is measured by that
stage and never recomputed or overwritten downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

BYTES_PER_FLOAT = 4  # fp32 on the wire, until a compression stage says otherwise


@dataclass
class RoundRecord:
    """The round's selected clients and everything they produced.

    Rows of every per-client field follow ``clients``. ``updates[i]`` is client ``clients[i]``'s
    ``w_local - w_global``; ``payloads`` holds further uploads of the same clients (SCAFFOLD's
    ``delta_c``, FedNova's ``a_norm``), each ``(n, ...)``; ``weights`` are the aggregation
    weights (the clients' sample counts unless the algorithm says otherwise); ``steps`` the local
    steps each client ran; ``byzantine`` marks clients whose upload is adversarial.
    """

    round: int
    clients: np.ndarray  # (n,) int64 client ids, ascending
    num_samples: np.ndarray  # (n,) int64
    steps: np.ndarray | None = None  # (n,) int64 local steps
    updates: torch.Tensor | None = None  # (n, d)
    losses: torch.Tensor | None = None  # (n,) mean local loss
    weights: torch.Tensor | None = None  # (n,) aggregation weights
    payloads: dict[str, torch.Tensor] = field(default_factory=dict)
    byzantine: np.ndarray | None = None  # (n,) bool
    bytes: dict[str, int] = field(default_factory=dict)  # "uplink/update", "downlink/model", ...
    client_rows: dict[str, torch.Tensor] = field(default_factory=dict)  # per-client state, read once
    root_update: torch.Tensor | None = None  # (d,) the server's own update on its root data (FLTrust)

    @property
    def n(self) -> int:
        return len(self.clients)

    def add_bytes(self, direction: str, what: str, nbytes: int) -> None:
        """Count ``nbytes`` sent ``direction`` (``uplink`` or ``downlink``) for ``what``; counts
        for the same key add up, never replace each other."""
        if direction not in ("uplink", "downlink"):
            raise ValueError(f"direction must be uplink or downlink, got {direction!r}")
        key = f"{direction}/{what}"
        self.bytes[key] = self.bytes.get(key, 0) + int(nbytes)

    def total_bytes(self, direction: str) -> int:
        return sum(v for k, v in self.bytes.items() if k.startswith(direction + "/"))


def fp32_bytes(t: torch.Tensor) -> int:
    """Bytes of ``t`` sent as uncompressed fp32."""
    return t.numel() * BYTES_PER_FLOAT
