"""PowerSGD: low-rank compression of each weight matrix by one step of warm-started subspace iteration
(Vogels, Karimireddy & Jaggi 2019, "PowerSGD: Practical low-rank gradient compression for distributed
optimization", Algorithm 1; reference code github.com/epfml/powersgd).

The flat update row of length ``d`` is the concatenation of the model's parameters, each flattened
in row-major order, in the order of ``shapes`` (as :class:`fedbench.engine.params.FlatParams` lays
them out). A parameter of shape ``(m, k1, k2, ...)`` with two or more dims is viewed as the matrix
``M`` of shape ``(m, n)``, ``n = k1 k2 ...`` (output features by input features and kernel, as the
reference's ``view_as_matrix``). With rank ``r`` and the client's ``Q`` ``(n, r)`` from its previous
round (its state)::

    P = M Q                  (m x r)
    P = orthonormalize(P)    (Gram-Schmidt, below)
    Q = M^T P                (n x r)    -> sent: P and Q; kept: Q, the next round's start
    M_hat = P Q^T            (what the server decodes)

This is the order of the paper's Algorithm 1 and of the reference's ``RankKReducer`` (with
``reuse_query``): the warm-start ``Q`` is used as it is, not orthogonalised, and only ``P`` is
orthonormalised. One client's ``Q`` stays on that client; there is no all-reduce (every client
sends its own ``P`` and ``Q``, and the server decodes each).

**Which parameters.** A matrix is compressed iff ``m n > min_compression * r (m + n)``: with the
default ``min_compression = 1`` iff sending ``P`` and ``Q`` is strictly smaller than sending ``M``
(so ``r < min(m, n)``). This is the reference's rule ``numel / (r (m + n) / 2) > 2`` (its default
``min_compression_rate = 2`` counts half of ``P`` and ``Q`` per step, as its library version
alternates them; here both go every round). Values below 1 also compress matrices where ``P`` and
``Q`` are not smaller (``0``: every non-empty matrix), for studying the algorithm. Vectors, biases,
scalars and the matrices not compressed go as fp32.

**Orthonormalisation.** The reference's paper code (``gradient_reducers.orthogonalize``) uses
Gram-Schmidt, the paper's choice for the few (1-4) columns of ``P``; its library version uses
``torch.linalg.qr``. Here: classical Gram-Schmidt with reorthogonalisation ("twice is enough",
Giraud, Langou & Rozloznik 2005), columns left to right: column ``j`` minus its projection on the
earlier columns, twice, then divided by its norm, in fp64. This keeps ``P`` orthonormal to fp64
precision even when ``M Q`` is (nearly) rank-deficient, where one pass loses orthogonality. A
column whose norm after the projections is at most ``DEPENDENT = 1e-10`` times its norm before
(linearly dependent on the earlier columns up to rounding, or zero) is set to zero, where the
reference divides by ``norm + 1e-8``: an absolute floor that would shrink the small updates of
federated clients (``P`` scales as ``||M||^2``), whereas here ``C(2^k M) = 2^k C(M)`` exactly.
Signs are those of Gram-Schmidt (each column keeps a positive component along the column of
``M Q`` it comes from), so the result is deterministic.

**State.** A client's state row is the concatenation of its compressed layers' ``Q`` ``(n, r)``,
row-major, in layer order: ``state_dim = sum_l n_l r`` fp32 values. A zero row is "no state yet"
(the per-client store starts at zero); more generally every all-zero column of a ``Q`` is drawn
anew from a standard normal, as the paper initialises ``Q``: a zero column carries no direction,
and would stay zero forever (``M 0 = 0``). Zero columns come from a zero layer update or a dropped
dependent column (above). The fresh values are drawn from the generator every call, for every row
and layer, ``torch.randn(n, state_dim)`` (used only where a column is zero), so the generator's
consumption does not depend on the data: see :meth:`PowerSGD.start`.

**Arithmetic.** The products ``M Q``, ``M^T P`` and ``P Q^T`` and the orthonormalisation run in
fp64 on the fp32 inputs and are rounded once to fp32 (``P`` and ``Q`` as sent, ``M_hat`` as decoded).
Batched and single matrix products may sum in different orders (on the CPU, fp32 ``bmm`` of a
200 x 800 matrix differs in the last bit between a batch and its rows); in fp64 the difference is
~1e-16 relative and vanishes in the rounding to fp32 unless a value lies that close to an fp32
rounding boundary, so a row alone (:meth:`PowerSGD.encode`) and in a batch (the fast path) give the
same bits on one device, except with vanishing probability or when ``M Q`` is so ill-conditioned
that a kept column is mostly cancellation. Across devices (CUDA fast path, CPU wire path) expect
agreement to ~1e-7 relative, not bits. On the CPU the products go through numpy's ``matmul``
(BLAS per matrix, :func:`bmm`), several times faster there than torch's ``bmm`` for these thin
shapes; at rank 1 ``P Q^T`` is a broadcast product (one fp32 product per entry, the same bits).
Cost: each compressed layer's batch is copied once to fp64 (transient, twice its fp32 size);
``P`` and ``Q`` are thin (``r`` columns).

Wire format (little-endian), for one row; the receiver knows ``shapes``, ``rank`` and
``min_compression``. Per parameter, in order:

- not compressed: its ``numel`` values, fp32, in the row's order;
- compressed: ``P`` (``m x r``), then ``Q`` (``n x r``), each fp32 row-major.

Bytes per row: ``4 * (sum_uncompressed numel + sum_compressed r (m + n))``, the same for every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# A column of M Q whose part orthogonal to the earlier columns is at most this fraction of its norm
# is numerically dependent: its direction is rounding noise (~1e-16 relative), and its weight in
# M_hat would lie far below fp32's resolution (~6e-8), so it is dropped (set to zero).
DEPENDENT = 1e-10


@dataclass(frozen=True)
class Layer:
    """One parameter's place in the flat row, in the message and in the state."""

    offset: int  # first index in the row
    numel: int
    rows: int  # m (compressed layers)
    cols: int  # n (compressed layers)
    compressed: bool
    state_offset: int  # first index of its Q in the state row (compressed layers)
    msg_floats: int  # fp32 values it takes in the message


def orthonormalize(p: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt over the columns of a batch ``p`` ``(b, m, r)`` (fp64), with reorthogonalisation.

    Column ``j``: subtract its projection on columns ``0..j-1`` twice, then divide by its norm;
    a column left with at most ``DEPENDENT`` of its norm, or zero, becomes zero. Returns a new tensor.
    """
    cols: list[torch.Tensor] = []
    for j in range(p.shape[2]):
        v = p[:, :, j : j + 1]
        before = torch.linalg.vector_norm(v, dim=1, keepdim=True)
        if cols:
            basis = torch.cat(cols, 2)  # zero columns of the basis project nothing away
            for _ in range(2):  # the second pass removes what the first one's rounding left
                v = v - bmm(basis, bmm(basis.transpose(1, 2), v))
        after = torch.linalg.vector_norm(v, dim=1, keepdim=True)
        keep = after > DEPENDENT * before  # false for a zero column (0 > 0)
        cols.append(torch.where(keep, v / torch.where(keep, after, 1.0), 0.0))
    return torch.cat(cols, 2)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm``; on the CPU through numpy's ``matmul``, which calls BLAS per matrix: torch's CPU
    ``bmm`` takes a slow path for these thin products (10 x 200 x 784 times 784 x 1 in fp64: 1.7 ms
    against numpy's 0.17 ms)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return torch.bmm(a, b)


def compress_batch(m: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One PowerSGD step on a batch: ``M`` ``(b, m, n)`` and the start ``Q`` ``(b, n, r)`` (fp32) to
    the sent ``P`` ``(b, m, r)`` and ``Q`` ``(b, n, r)`` (fp32), computed in fp64, rounded once each."""
    m64 = m.double()
    p = orthonormalize(bmm(m64, q.double())).float()
    # Q from the P that is sent (rounded), so that P Q^T is the best fit to M on the sent P;
    # computed as (P^T M)^T, which reads M row by row
    return p, bmm(p.double().transpose(1, 2), m64).transpose(1, 2).float()


def expand(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``M_hat = P Q^T`` ``(b, m, n)``: summed in fp64 (each product of two fp32 is exact there),
    rounded once to fp32. At rank 1 that is one fp32 product per entry, correctly rounded: the same
    numbers without the fp64 detour."""
    if p.shape[2] == 1:
        return p * q.transpose(1, 2)
    return bmm(p.double(), q.double().transpose(1, 2)).float()


class PowerSGD:
    """PowerSGD of rank ``rank`` over the parameters of ``shapes`` (flat order; module docstring).

    Fast path :meth:`roundtrip` ``(x, state, generator) -> (x_hat, nbytes, new_state)`` over a batch of
    clients; wire path :meth:`encode` ``(row, q) -> bytes`` and :meth:`decode` ``(data, d) -> row``.
    ``state_dim`` fp32 values of state per client (its ``Q``s), ``row_bytes`` bytes per message."""

    name = "powersgd"
    stateful = True

    def __init__(self, shapes: list[tuple[int, ...]], rank: int = 1, min_compression: float = 1.0):
        if int(rank) != rank or rank < 1:
            raise ValueError(f"powersgd: rank={rank}, expected an integer >= 1")
        if not math.isfinite(min_compression) or min_compression < 0:
            raise ValueError(f"powersgd: min_compression={min_compression}, expected a finite number >= 0")
        self.rank, self.min_compression = int(rank), float(min_compression)
        self.shapes = [tuple(int(s) for s in shape) for shape in shapes]
        layers, offset, state_offset = [], 0, 0
        for shape in self.shapes:
            if any(s < 0 for s in shape):
                raise ValueError(f"powersgd: negative size in shape {shape}")
            numel = math.prod(shape)
            m, n = (shape[0], numel // shape[0]) if len(shape) >= 2 and numel > 0 else (0, 0)
            compressed = len(shape) >= 2 and m * n > self.min_compression * self.rank * (m + n)
            msg = self.rank * (m + n) if compressed else numel
            layers.append(Layer(offset, numel, m, n, compressed, state_offset, msg))
            offset += numel
            state_offset += n * self.rank if compressed else 0
        self.layers: list[Layer] = layers
        self.dim, self.state_dim = offset, state_offset
        self.row_bytes = 4 * sum(layer.msg_floats for layer in layers)

    @property
    def compressed(self) -> list[bool]:
        """Whether each parameter, in order, is sent as ``P`` and ``Q`` (else as fp32)."""
        return [layer.compressed for layer in self.layers]

    def _q_view(self, state: torch.Tensor, layer: Layer) -> torch.Tensor:
        """Layer's ``Q`` ``(b, n, r)`` as a view of the state rows ``(b, state_dim)``."""
        block = state[:, layer.state_offset : layer.state_offset + layer.cols * self.rank]
        return block.view(state.shape[0], layer.cols, self.rank)

    def start(
        self, state: torch.Tensor | None, n: int, generator: torch.Generator | None, device: torch.device | None = None
    ) -> torch.Tensor:
        """The ``Q`` each of ``n`` rows starts from ``(n, state_dim)`` fp32: ``state`` (``None``: zeros)
        with every all-zero column of a layer's ``Q`` replaced by a standard normal draw.

        The draw is ``torch.randn(n, state_dim)`` from ``generator`` (on its device), made on every
        call whatever the state, so that equal seeds give equal starts and the generator advances
        the same way. ``generator`` may be omitted only when no column is zero."""
        if state is None:
            state = torch.zeros(n, self.state_dim, device=device)
        if state.shape != (n, self.state_dim):
            raise ValueError(f"powersgd: state of shape {tuple(state.shape)}, expected {(n, self.state_dim)}")
        state = state.float()
        if self.state_dim == 0:
            return state.clone()
        fresh = None
        if generator is not None:
            fresh = torch.randn(n, self.state_dim, generator=generator, device=generator.device).to(state.device)
        out = state.clone()
        for layer in self.layers:
            if not layer.compressed:
                continue
            q = self._q_view(out, layer)
            empty = (q == 0).all(dim=1, keepdim=True)  # (n, 1, r): a column with no direction
            if fresh is None:
                if bool(empty.any()):
                    raise ValueError("powersgd: a zero column of Q (no state yet) needs a generator to draw it")
                continue
            q.copy_(torch.where(empty, self._q_view(fresh, layer), q))
        return out

    def roundtrip(
        self, x: torch.Tensor, state: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_hat (n, d), nbytes (n,) int64 on the CPU, new_state (n, state_dim))`` for the rows of
        ``x``, each with its state row (zero columns drawn from ``generator``, :meth:`start`)."""
        x = x.float()
        n, d = x.shape
        if d != self.dim:
            raise ValueError(f"powersgd: rows of length {d}, expected d={self.dim} from the shapes")
        q0 = self.start(state, n, generator, x.device).to(x.device)
        out = torch.empty_like(x)
        new_state = torch.empty_like(q0)
        for layer in self.layers:
            a, b = layer.offset, layer.offset + layer.numel
            if not layer.compressed:
                out[:, a:b] = x[:, a:b]  # sent as fp32
                continue
            p, q = compress_batch(x[:, a:b].reshape(n, layer.rows, layer.cols), self._q_view(q0, layer))
            out[:, a:b] = expand(p, q).reshape(n, layer.numel)
            self._q_view(new_state, layer).copy_(q)
        return out, torch.full((n,), self.row_bytes, dtype=torch.int64), new_state

    def encode(self, row: torch.Tensor, q: torch.Tensor) -> bytes:
        """The message for ``row`` ``(d,)`` from the client's start ``q`` ``(state_dim,)``: its state,
        with no zero column (draw those first with :meth:`start`). ``P`` and ``Q`` are computed here."""
        row = row.detach().cpu().float().reshape(-1)
        q = q.detach().cpu().float().reshape(1, -1)
        if row.numel() != self.dim or q.shape[1] != self.state_dim:
            raise ValueError(
                f"powersgd: row of {row.numel()} and state of {q.shape[1]} values, "
                f"expected d={self.dim} and state_dim={self.state_dim}"
            )
        q = self.start(q, 1, None)  # refuses a zero column: the wire path draws nothing
        parts = []
        for layer in self.layers:
            values = row[layer.offset : layer.offset + layer.numel]
            if layer.compressed:
                p, qn = compress_batch(values.reshape(1, layer.rows, layer.cols), self._q_view(q, layer))
                values = torch.cat([p.reshape(-1), qn.reshape(-1)])
            parts.append(values.numpy().astype("<f4").tobytes())
        return b"".join(parts)

    def decode(self, data: bytes, d: int) -> torch.Tensor:
        if d != self.dim:
            raise ValueError(f"powersgd: d={d}, expected {self.dim} from the shapes")
        out = torch.empty(d)
        for layer, part in zip(self.layers, self.split_message(data)):
            if isinstance(part, tuple):
                p, q = part
                part = expand(p.unsqueeze(0), q.unsqueeze(0)).reshape(-1)
            out[layer.offset : layer.offset + layer.numel] = part
        return out

    def split_message(self, data: bytes) -> list[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """The message's parts per parameter: the fp32 values, or ``(P (m, r), Q (n, r))``."""
        if len(data) != self.row_bytes:
            raise ValueError(f"powersgd: message of {len(data)} bytes, expected {self.row_bytes}")
        values = torch.from_numpy(np.frombuffer(data, "<f4").astype(np.float32))
        parts: list[torch.Tensor | tuple[torch.Tensor, torch.Tensor]] = []
        pos = 0
        for layer in self.layers:
            chunk = values[pos : pos + layer.msg_floats]
            pos += layer.msg_floats
            if layer.compressed:
                split = layer.rows * self.rank
                parts.append((chunk[:split].view(layer.rows, self.rank), chunk[split:].view(layer.cols, self.rank)))
            else:
                parts.append(chunk)
        return parts
