"""Error feedback around any lossy uplink codec (``uplink.error_feedback``).

With a biased compressor ``C`` (top-k, casts, sign), the part of the update that ``C`` drops is
lost for good and training can stall or diverge; error feedback keeps it on the client and
sends it later. Each client keeps one ``(d,)`` row of state in the per-client store, allocated
the first time it takes part, so memory grows with the clients that trained.

- ``ef`` (Stich, Cordonnier & Jaggi 2018 "Sparsified SGD with memory"; Karimireddy et al. 2019
  "Error feedback fixes SignSGD"): with residual ``e_i`` (zero at first), the client sends
  ``c_i = C(u_i + e_i)`` and keeps ``e_i <- u_i + e_i - c_i``. The server aggregates ``c_i``.
- ``ef21`` (Richtarik, Sokolov & Fatkhullin 2021 "EF21"): client and server both hold ``g_i``
  (zero at first); the client sends ``c_i = C(u_i - g_i)``, both set ``g_i <- g_i + c_i``, and
  the server aggregates the ``g_i`` of the round's clients. Under partial participation the
  server's copy of ``g_i`` is the client's last one, so one shared row stands for both.

Both return what the server aggregates, each row's message bytes (those of ``C``), and the
state to keep. The state passed in is overwritten (it becomes the new state): the per-client
store hands out a fresh copy, and the ``(n, d)`` copies saved are a few milliseconds a round.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Roundtrip = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def ef(updates: torch.Tensor, residual: torch.Tensor, roundtrip: Roundtrip):
    """``(sent, nbytes, new_residual)`` for classic error feedback (module docstring)."""
    corrected = residual.add_(updates)
    sent, nbytes = roundtrip(corrected)
    return sent, nbytes, corrected.sub_(sent)


def ef21(updates: torch.Tensor, state: torch.Tensor, roundtrip: Roundtrip):
    """``(aggregated, nbytes, new_state)`` for EF21: ``new_state = state + C(updates - state)``,
    which is also what the server aggregates (module docstring)."""
    sent, nbytes = roundtrip(updates - state)
    new_state = state.add_(sent)
    return new_state, nbytes, new_state
