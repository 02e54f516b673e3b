"""Random-k sparsification (Konecny et al. 2016, "Federated learning: strategies for improving
communication efficiency"; Stich et al. 2018, "Sparsified SGD with memory", ``rand_k``).

``C(x)_i = c x_i`` for ``i`` in ``S`` and 0 elsewhere, ``S`` a uniformly random ``k``-subset of
``{0..d-1}`` (without replacement) and ``c = 1`` (Stich et al.'s ``rand_k``), or ``c = d / k`` with
``unbiased=True`` so that ``E[C(x)] = x`` (the scaling of Konecny et al.'s random mask). ``c`` is
applied in fp32 by the sender. ``k = max(1, round(fraction * d))`` when given as a fraction, at most
``d`` (as :class:`~fedbench.compress.topk.TopK`).

Randomness: :meth:`draw` returns ``S`` itself, ascending indices ``(n, k)`` int64, a uniform
``k``-subset per row: on a CPU generator, numpy's ``Generator.choice(d, k, replace=False)`` row by row
from PCG64 seeded with the generator's seed; on a GPU one, the ``k`` smallest of ``d`` iid fp64
uniform keys (fp64 keys make ties negligible).

Wire format (little-endian), for one row of length ``d``:

- ``shared_seed=True``: the receiver shares the seed, hence ``S`` (``decode`` needs ``rand``), and
  knows ``k`` from the config: the message is the ``k`` values ``C(x)_i``, ``i`` in ``S``
  ascending, fp32, with no header. Bytes: ``4 k``.
- ``shared_seed=False``: :mod:`fedbench.compress.threshold`'s sparse message (topk's ``varint``
  layout): ``k`` uint32, the ascending indices as a varint first index and varint gaps
  ``i_j - i_{j-1} - 1``, the ``k`` values fp32. Bytes: ``4 + sum_j varint_len(gap_j) + 4 k``.
"""

from __future__ import annotations

import numpy as np
import torch

from fedbench.compress.threshold import decode_sparse, encode_sparse, scatter_row
from fedbench.compress.topk import varint_lengths


class RandK:
    name = "randk"
    stochastic = True

    def __init__(
        self, fraction: float | None = None, k: int | None = None, shared_seed: bool = True, unbiased: bool = False
    ):
        if (fraction is None) == (k is None):
            raise ValueError("randk: give exactly one of fraction and k")
        self.fraction, self.k, self.shared_seed, self.unbiased = fraction, k, bool(shared_seed), bool(unbiased)

    def k_for(self, d: int) -> int:
        k = self.k if self.k is not None else round(self.fraction * d)
        return int(min(d, max(1, k)))

    def draw(self, n: int, d: int, generator: torch.Generator) -> torch.Tensor:
        k = self.k_for(d)
        if generator.device.type == "cpu":  # far faster than keys and top-k for k << d
            rng = np.random.default_rng(generator.initial_seed())
            rows = [np.sort(rng.choice(d, k, replace=False, shuffle=False)) for _ in range(n)]
            return torch.from_numpy(np.stack(rows).astype(np.int64)).view(n, k)
        keys = torch.rand(n, d, generator=generator, dtype=torch.float64, device=generator.device)
        chosen = torch.topk(keys, k, dim=1, largest=False, sorted=False).indices
        return torch.sort(chosen, dim=1).values

    def _indices(self, rand: torch.Tensor | None, n: int, d: int) -> torch.Tensor:
        k = self.k_for(d)
        if rand is None:
            raise ValueError("randk: stochastic codec, pass rand from draw()")
        bad = f"randk: rand must be {k} ascending indices below d={d} per row, as draw() gives"
        if rand.shape != (n, k) or rand.dtype != torch.int64:
            raise ValueError(bad)
        if (rand[:, 0] < 0).any() or (rand[:, -1] >= d).any() or (rand.diff(dim=1) <= 0).any():
            raise ValueError(bad)
        return rand

    def _values(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        values = x.gather(1, idx)
        if self.unbiased:
            values = values * torch.tensor(x.shape[1] / idx.shape[1], dtype=torch.float32, device=x.device)
        return values

    def roundtrip(self, x: torch.Tensor, rand: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        n, d = x.shape
        idx = self._indices(rand, n, d).to(x.device)
        out = torch.zeros_like(x).scatter_(1, idx, self._values(x, idx))
        k = idx.shape[1]
        if self.shared_seed:
            return out, torch.full((n,), 4 * k, dtype=torch.int64)
        gaps = torch.diff(idx, dim=1, prepend=torch.full_like(idx[:, :1], -1)) - 1
        return out, (4 + varint_lengths(gaps).sum(1) + 4 * k).cpu()

    def encode(self, row: torch.Tensor, rand: torch.Tensor | None = None) -> bytes:
        row = row.detach().cpu().float().view(1, -1)
        idx = self._indices(None if rand is None else rand.cpu().view(1, -1), 1, row.shape[1])
        values = self._values(row, idx)[0]
        if self.shared_seed:
            return values.numpy().astype("<f4").tobytes()
        return encode_sparse(idx[0], values)

    def decode(self, data: bytes, d: int, rand: torch.Tensor | None = None) -> torch.Tensor:
        k = self.k_for(d)
        if self.shared_seed:
            idx = self._indices(None if rand is None else rand.cpu().view(1, -1), 1, d)[0].numpy()
            if len(data) != 4 * k:
                raise ValueError(f"randk: {len(data)} bytes for k={k}, expected {4 * k}")
            return scatter_row(idx, np.frombuffer(data, "<f4").astype(np.float32), d)
        idx, values = decode_sparse(data, d, self.name)
        if len(idx) != k:
            raise ValueError(f"randk: message holds {len(idx)} entries, expected k={k} for d={d}")
        return scatter_row(idx, values, d)
