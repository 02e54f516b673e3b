"""The downlink of a lossy scheme: the server sends each round's model *delta*, compressed, and a
client downloads the deltas it missed since its last copy (the ``downlink`` config group with any
option but ``none``, ``fp16``, ``bf16``; those send the model itself, see ``Simulation.broadcast``).

Every client holds the same *public model* ``w`` (``Simulation.params``, what clients train from
and what is evaluated). At the end of round ``t`` the server optimizer's step ``Delta_t`` is not
applied as is: the server sends ``m_t = C(Delta_t + e_{t-1})`` and everyone applies
``w_t = w_{t-1} + m_t``. With ``error_feedback=ef`` the server keeps what ``C`` dropped,
``e_t = Delta_t + e_{t-1} - m_t`` (zero at first), and sends it later: STC's server-side residual
(Sattler et al. 2019, Algorithm 2), the downlink half of DoubleSqueeze (Tang et al. 2019). With
``none``, ``e`` stays zero and the dropped part is lost. ``ef21`` is EF21-P (Gruntkowska, Tyurin &
Richtarik 2023): the clients' model ``g`` follows the server's exact model ``x`` by
``g <- g + C(x - g)``; since ``x - g`` before the message is ``Delta_t + e_{t-1}``, it sends the
same messages as ``ef`` and the two give identical runs.

**What a client downloads** (Sattler et al. 2019's caching of partial sums). A client that took
part last in round ``s`` holds ``w_{s-1}``; in round ``r`` it needs ``m_s + ... + m_{r-1}``. The
server keeps every message's length and sends the ``r - s`` missed messages, unless their total
exceeds the full fp32 model (``4 d`` bytes) or ``r - s > cache_rounds`` (a server that keeps only
the last ``cache_rounds`` messages): then it sends the full model in fp32. A client that never
took part has no copy and downloads the full fp32 model (no shared-seed initialisation is assumed).
Byte counts are each message's encoded length, so they are exact for the protocol "send the missed
messages one by one"; a server that re-encodes their sum could send less when supports overlap.

A stochastic codec draws from the ``downlink`` stream keyed by round; PowerSGD's warm start ``Q``
is the server's own single row of state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedbench.compress import feedback
from fedbench.compress.stage import run_codec
from fedbench.rng import torch_generator
from fedbench.round import BYTES_PER_FLOAT, RoundRecord


class DownlinkStage:
    def __init__(
        self, codec: Any, error_feedback: str, cache_rounds: int | None, seed: int, num_clients: int, dim: int
    ):
        self.codec = codec
        self.mode = error_feedback
        self.cache_rounds = cache_rounds
        self.seed = seed
        self.dim = dim
        self.synced = np.zeros(num_clients, dtype=np.int64)  # round of the client's last download; 0: none
        self.message_bytes: list[int] = []  # message_bytes[t - 1]: length of m_t
        self.residual: torch.Tensor | None = None  # e, with error feedback
        self.q: torch.Tensor | None = None  # PowerSGD's warm start (1, state_dim)

    def download_bytes(self, clients: np.ndarray, r: int) -> np.ndarray:
        """Bytes each of ``clients`` downloads at the start of round ``r`` (module docstring)."""
        full = self.dim * BYTES_PER_FLOAT
        cum = np.concatenate([[0], np.cumsum(self.message_bytes, dtype=np.int64)])
        s = self.synced[clients]
        missed = r - s
        total = cum[r - 1] - cum[np.clip(s - 1, 0, None)]
        cached = (s > 0) if self.cache_rounds is None else (s > 0) & (missed <= self.cache_rounds)
        return np.where(cached, np.minimum(total, full), full)

    def send(self, record: RoundRecord) -> dict[str, float]:
        """Count the round's downloads under ``downlink/model`` and mark its clients up to date;
        ``downlink_compression`` is the fp32 model bytes over the bytes sent."""
        nbytes = self.download_bytes(record.clients, record.round)
        self.synced[record.clients] = record.round
        sent = int(nbytes.sum())
        record.add_bytes("downlink", "model", sent)
        return {"downlink_compression": record.n * self.dim * BYTES_PER_FLOAT / sent}

    def compress(self, step: torch.Tensor, r: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The message ``m_r`` for the server's step ``Delta_r`` ``(d,)``, what every client adds to
        its model. Metrics: ``downlink_rel_error`` ``||m_r - v|| / ||v||`` with ``v`` the codec's
        input (0 when ``v = 0``) and, with error feedback, ``downlink_ef_residual_norm`` ``||e_r||``."""
        gen = torch_generator(self.seed, "downlink", r, device=step.device)
        rel_error: list[float] = []

        def roundtrip(v: torch.Tensor):
            decoded, nbytes, self.q = run_codec(self.codec, v, gen, self.q)
            norm = float(v.norm())  # here: error feedback overwrites v afterwards
            rel_error.append(float((decoded - v).norm()) / norm if norm > 0 else 0.0)
            return decoded, nbytes

        metrics: dict[str, float] = {}

        v = step.view(1, -1)
        if self.mode == "none":
            sent, nbytes = roundtrip(v)
        else:  # ef21 sends the same messages as ef (module docstring)
            e = torch.zeros_like(v) if self.residual is None else self.residual.view(1, -1).clone()
            sent, nbytes, e = feedback.ef(v, e, roundtrip)
            self.residual = e[0]
            metrics["downlink_ef_residual_norm"] = float(e.norm())
        self.message_bytes.append(int(nbytes[0]))
        metrics["downlink_rel_error"] = rel_error[0]
        return sent[0], metrics

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "synced": torch.as_tensor(self.synced),
            "message_bytes": torch.as_tensor(self.message_bytes, dtype=torch.int64),
        }
        if self.residual is not None:
            out["residual"] = self.residual.cpu()
        if self.q is not None:
            out["q"] = self.q.cpu()
        return out

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.synced = state["synced"].numpy().astype(np.int64)
        self.message_bytes = [int(b) for b in state["message_bytes"]]
        self.residual = state["residual"].to(device) if "residual" in state else None
        self.q = state["q"].to(device) if "q" in state else None
