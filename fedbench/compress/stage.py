"""The uplink codec in the round's ``uplink`` stage: what each client's messages cost and what the
server decodes from them.

The update goes through the codec (with error feedback when ``uplink.error_feedback`` asks,
:mod:`fedbench.compress.feedback`); every further ``(n, d)`` upload of the algorithm (SCAFFOLD's
``delta_c``) goes through the same codec without error feedback, and its bytes are counted under
its own name. Smaller uploads (FedNova's per-client ``a_norm``) and, under ``sign_majority``, the
payloads (a vote of signs is no estimate of a control variate) go as fp32. A stochastic codec's
randomness comes from the ``compress`` stream keyed by (round, upload): 0 for the update, 1, 2...
for the payloads in name order. A stateful codec (PowerSGD) keeps one row per client and upload in
the per-client store: ``uplink_<codec>`` for the update, ``uplink_<codec>/<payload>`` for a payload.
"""

from __future__ import annotations

from typing import Any

import torch

from fedbench.compress import feedback
from fedbench.compress._bits import row_distances, row_norms
from fedbench.rng import torch_generator
from fedbench.round import RoundRecord, fp32_bytes
from fedbench.state import ClientState


def run_codec(codec: Any, v: torch.Tensor, generator: torch.Generator, state: torch.Tensor | None = None):
    """``(decoded, nbytes, state)``: ``codec``'s fast path on the rows ``v`` ``(n, d)``, drawing a
    stochastic codec's randomness from ``generator`` and threading a stateful codec's ``state``."""
    if getattr(codec, "stateful", False):
        return codec.roundtrip(v, state, generator)
    if getattr(codec, "stochastic", False):
        return (*codec.roundtrip(v, codec.draw(*v.shape, generator)), state)
    return (*codec.roundtrip(v), state)


class UplinkStage:
    def __init__(self, codec: Any, error_feedback: str, seed: int, client_state: ClientState, dim: int):
        self.codec = codec
        self.mode = error_feedback
        self.seed = seed
        self.store = client_state
        self.dim = dim

    def roundtrip(self, v: torch.Tensor, record: RoundRecord, upload: int = 0, state: str = ""):
        """The codec's fast path on ``v`` (decoded rows, bytes per row), with the round's draws."""
        gen = torch_generator(self.seed, "compress", record.round, upload, device=v.device)
        if not getattr(self.codec, "stateful", False):
            return run_codec(self.codec, v, gen)[:2]
        name = f"uplink_{self.codec.name}{state}"
        q = self.store.get(name, record.clients, self.codec.state_dim, v.device)
        decoded, nbytes, q = run_codec(self.codec, v, gen, q)
        self.store.set(name, record.clients, q)
        return decoded, nbytes

    def __call__(self, record: RoundRecord) -> dict[str, float]:
        """Encode the round's uploads; returns ``uplink_compression`` (fp32 bytes / sent bytes of the
        updates), ``uplink_rel_error`` (mean over clients with a non-zero codec input ``v`` of
        ``||C(v) - v|| / ||v||``; ``v`` is the update, or the update corrected by error feedback)
        and, with error feedback, ``ef_residual_norm``: the mean over the round's clients of what
        the server still lacks, ``||e_i||`` (``ef``) or ``||u_i - g_i||`` (``ef21``)."""
        x = record.updates
        seen: dict[str, torch.Tensor] = {}

        def roundtrip(v: torch.Tensor):
            decoded, nbytes = self.roundtrip(v, record)
            seen["norms"] = row_norms(v)[:, 0]  # here: error feedback overwrites v afterwards
            if self.mode != "ef":  # under ef, v - C(v) is the new residual: its norms come below
                seen["errors"] = row_distances(decoded, v)
            return decoded, nbytes

        metrics: dict[str, float] = {}
        if self.mode == "none":
            decoded, nbytes = roundtrip(x)
        else:
            name = f"uplink_{self.mode}"
            state = self.store.get(name, record.clients, self.dim, x.device)
            decoded, nbytes, state = getattr(feedback, self.mode)(x, state, roundtrip)
            self.store.set(name, record.clients, state)
            if self.mode == "ef":  # the new residual v - C(v): the codec's error and what is left
                seen["errors"] = gap = row_norms(state)[:, 0]
            else:
                gap = row_distances(x, decoded)
            metrics["ef_residual_norm"] = float(gap.mean())
        sent = int(nbytes.sum())
        record.add_bytes("uplink", "update", sent)
        norms = seen["norms"]
        moved = norms > 0
        err = (seen["errors"][moved] / norms[moved]).mean() if bool(moved.any()) else x.new_tensor(0.0)
        record.updates = decoded
        if not hasattr(self.codec, "vote"):
            for i, name in enumerate(sorted(record.payloads), start=1):
                p = record.payloads[name]
                if p.shape == x.shape:
                    record.payloads[name], nb = self.roundtrip(p, record, i, f"/{name}")
                    record.add_bytes("uplink", name, int(nb.sum()))
        return {"uplink_compression": fp32_bytes(x) / sent, "uplink_rel_error": float(err), **metrics}
