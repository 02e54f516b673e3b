"""PowerSGD (Vogels et al. 2019): the batched fast path equals encode-then-decode bit for bit with exact
byte counts, the new state is the sent Q, known answers (rank-1 recovery, a 2x2 by hand, matrices
too small to compress), warm-started rounds converge to the truncated SVD, zero state columns are
drawn from the generator, no absolute epsilon, and refusal of bad input."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from fedbench.compress import PowerSGD
from fedbench.compress.powersgd import orthonormalize


def bits_of(t):
    return t.contiguous().view(torch.int32)  # bit patterns: -0.0 and NaN compare exactly


def gen(seed):
    return torch.Generator().manual_seed(seed)


def sent_q(codec, msg):
    """The Q blocks of a message, concatenated in the layout of a state row."""
    parts = [part[1].reshape(-1) for part in codec.split_message(msg) if isinstance(part, tuple)]
    return torch.cat(parts) if parts else torch.zeros(0)


def assert_fast_equals_wire(codec, x, state, seed):
    n, d = x.shape
    fast, nbytes, new_state = codec.roundtrip(x, state, gen(seed))
    assert fast.shape == (n, d) and fast.dtype == torch.float32
    assert nbytes.shape == (n,) and nbytes.dtype == torch.int64 and nbytes.device.type == "cpu"
    assert new_state.shape == (n, codec.state_dim) and new_state.dtype == torch.float32
    start = codec.start(state, n, gen(seed))  # the Q each row started from, as the fast path drew it
    for i in range(n):
        msg = codec.encode(x[i], start[i])
        assert len(msg) == int(nbytes[i]) == codec.row_bytes, (i, len(msg), int(nbytes[i]))
        assert torch.equal(bits_of(codec.decode(msg, d)), bits_of(fast[i])), i
        assert torch.equal(bits_of(sent_q(codec, msg)), bits_of(new_state[i])), i  # the state is the sent Q
    return fast, new_state


SHAPES = {
    "mlp": [(16, 30), (16,), (10, 16), (10,)],
    "conv": [(8, 3, 3, 3), (8,), (12, 8, 3, 3), (12,), (5, 48)],
    "edge": [(), (1, 7), (7, 1), (0, 3), (3, 4), (2,), (6, 5)],
    "wide": [(64, 800), (64,)],  # fp32 bmm rounds differently batched and alone at this size
}


def rows(codec, seed):
    """Gaussian rows at several scales, a zero row, a row whose matrices are rank one."""
    g = gen(seed)
    x = torch.randn(6, codec.dim, generator=g) * torch.tensor([1.0, 1e-3, 1e3, 1.0, 1e-30, 1.0]).view(6, 1)
    x[3] = 0.0
    for layer in codec.layers:  # row 5: every matrix u v^T
        if layer.compressed:
            u, v = torch.randn(layer.rows, 1, generator=g), torch.randn(1, layer.cols, generator=g)
            x[5, layer.offset : layer.offset + layer.numel] = (u @ v).reshape(-1)
    return x


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES.keys())
def test_fast_path_equals_wire_path_and_bytes_are_exact(shapes, rank):
    codec = PowerSGD(shapes, rank=rank)
    x = rows(codec, seed=rank)
    # round 1 from no state; round 2 warm for rows 0-3, none for 4, a zeroed column of Q for 5
    _, state = assert_fast_equals_wire(codec, x, None, seed=10)
    state[4] = 0.0
    for layer in codec.layers:
        if layer.compressed:
            codec._q_view(state, layer)[5, :, -1] = 0.0
    assert_fast_equals_wire(codec, x.flip(1) + x, state, seed=11)


def test_byte_count_and_state_layout_by_hand():
    # (10, 20) r=2: 2 (10 + 20) = 60 < 200, P Q; (3, 4): 2 * 7 = 14 >= 12, fp32; (4, 2, 3, 3) is (4, 18): 44 < 72
    codec = PowerSGD([(10, 20), (10,), (3, 4), (4, 2, 3, 3)], rank=2)
    assert codec.compressed == [True, False, False, True]
    assert codec.dim == 200 + 10 + 12 + 72
    assert codec.row_bytes == 4 * (60 + 10 + 12 + 44)
    assert codec.state_dim == 20 * 2 + 18 * 2
    x = torch.randn(3, codec.dim, generator=gen(0))
    assert codec.roundtrip(x, None, gen(1))[1].tolist() == [4 * 126] * 3
    # the reference's default rule (numel / (r (m + n) / 2) > 2) is min_compression = 1 here
    assert PowerSGD([(4, 4)], rank=2).compressed == [False]  # 16 = 16: equal size goes uncompressed
    assert PowerSGD([(4, 5)], rank=2).compressed == [True]  # 18 < 20
    assert PowerSGD([(10, 20)], rank=2, min_compression=3.4).compressed == [False]  # 200 > 204 fails
    assert PowerSGD([(10, 20)], rank=2, min_compression=3.3).compressed == [True]


def test_rank_at_least_min_dim_is_sent_uncompressed():
    codec = PowerSGD([(3, 10), (4,)], rank=3)  # r >= min(m, n): r (m + n) = 39 >= 30
    assert codec.compressed == [False, False] and codec.state_dim == 0 and codec.row_bytes == 4 * 34
    x = torch.randn(2, 34, generator=gen(0))
    out, nbytes, state = codec.roundtrip(x)  # no state and no generator needed
    assert torch.equal(out, x) and nbytes.tolist() == [136, 136] and state.shape == (2, 0)
    assert codec.encode(x[0], torch.zeros(0)) == x[0].numpy().astype("<f4").tobytes()
    assert PowerSGD([(3, 10)], rank=2).compressed == [True]  # 26 < 30


def test_one_dimensional_parameters_pass_through_unchanged():
    shapes = [(5,), (6, 7), (), (7,), (2, 1, 1)]  # (2, 1, 1) is (2, 1): r (m + n) = 3 >= 2
    codec = PowerSGD(shapes, rank=1)
    assert codec.compressed == [False, True, False, False, False]
    x = torch.randn(4, codec.dim, generator=gen(3)) * 1e5
    x[0, :5] = torch.tensor([0.0, -0.0, float("inf"), 1e-45, -3.5])  # fp32 passes bit for bit
    out, _, _ = codec.roundtrip(x, None, gen(4))
    keep = torch.ones(codec.dim, dtype=torch.bool)
    keep[5 : 5 + 42] = False
    assert torch.equal(bits_of(out[:, keep]), bits_of(x[:, keep]))
    assert not torch.equal(out[:, ~keep], x[:, ~keep])
    msg = codec.encode(x[0], codec.start(None, 1, gen(4))[0])
    assert msg[:20] == x[0, :5].numpy().astype("<f4").tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_rank_one_matrix_is_recovered_from_any_start(seed):
    g = gen(seed)
    u, v = torch.randn(7, 1, generator=g), torch.randn(1, 11, generator=g)
    m = (u @ v).reshape(1, -1)
    codec = PowerSGD([(7, 11)], rank=1)
    starts = [
        torch.randn(1, 11, generator=g),  # random: not orthogonal to v almost surely
        v + 1e-3 * torch.randn(1, 11, generator=g),  # nearly v
        -v,  # exactly v up to sign
        torch.eye(11)[[int(v.abs().argmin())]],  # a basis vector, the one least aligned with v
    ]
    for q in starts:
        assert abs(float(v @ q.T)) > 0
        out, _, state = codec.roundtrip(m, q)
        assert torch.allclose(out, m, rtol=1e-6, atol=1e-6 * m.abs().max().item())
        # Q = M^T P with P = +-u / ||u||: Q = +-||u|| v
        assert torch.allclose(state.abs(), (u.norm() * v).abs(), rtol=1e-6)


def test_rank_one_matrix_with_rank_two_drops_the_dependent_column():
    # small integers: u v^T is exactly rank one in fp32 (a rounded product of reals has a ~1e-8 second direction)
    g = gen(5)
    u = torch.randint(1, 9, (9, 1), generator=g) * torch.tensor([1.0, -1.0]).repeat(5)[:9, None]
    v = torch.randint(-9, 10, (1, 8), generator=g).float()
    m = (u @ v).reshape(1, -1)
    codec = PowerSGD([(9, 8)], rank=2)
    out, _, state = codec.roundtrip(m, None, gen(6))
    assert torch.allclose(out, m, rtol=1e-6, atol=1e-6 * m.abs().max().item())
    msg = codec.encode(m[0], codec.start(None, 1, gen(6))[0])
    p, q = codec.split_message(msg)[0]
    # M Q's second column is a multiple of the first: dropped, zero in P, Q and the state
    assert p[:, 1].abs().max() == 0 and q[:, 1].abs().max() == 0 and torch.equal(state[0], q.reshape(-1))
    assert p[:, 0].norm().item() == pytest.approx(1.0, abs=1e-6)
    # ... and drawn anew next round (a zero column carries no direction)
    nxt = codec.start(state, 1, gen(7)).view(8, 2)
    assert torch.equal(nxt[:, 0], state.view(8, 2)[:, 0]) and nxt[:, 1].abs().min() > 0


def test_two_by_two_by_hand():
    # M = [[1, 2], [3, 4]], Q = (1, 1): P = M Q = (3, 7) -> (3, 7) / sqrt(58); Q = M^T P = (24, 34) / sqrt(58);
    # M_hat = P Q^T = [[72, 102], [168, 238]] / 58. r (m + n) = 4 = m n: forced with min_compression = 0
    codec = PowerSGD([(2, 2)], rank=1, min_compression=0)
    assert codec.compressed == [True] and codec.row_bytes == 16
    x, q = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.0, 1.0]])
    out, nbytes, state = codec.roundtrip(x, q)
    p = np.float32([3 / math.sqrt(58), 7 / math.sqrt(58)])
    # Q from the sent (rounded) P, in fp64 (exact here), rounded once
    qn = np.float32([1 * float(p[0]) + 3 * float(p[1]), 2 * float(p[0]) + 4 * float(p[1])])
    assert codec.encode(x[0], q[0]) == struct.pack("<4f", *p, *qn)
    assert state.tolist() == [qn.tolist()] and nbytes.tolist() == [16]
    want = np.float32([float(a) * float(b) for a in p for b in qn])  # exact products, rounded once
    assert out[0].tolist() == want.tolist()
    assert out[0].tolist() == pytest.approx([72 / 58, 102 / 58, 168 / 58, 238 / 58], rel=1e-6)


def test_warm_start_converges_to_the_truncated_svd():
    """Subspace iteration, one step per round from the last Q: after 20 rounds each client's error
    ||M - M_hat||_F / ||M||_F is within 1e-4 of the optimum sqrt(sum_{k > r} s_k^2) / ||M||_F (Eckart-Young)."""
    m, n, r, rounds = 40, 30, 2, 20
    g = gen(8)
    spectra = torch.tensor([[10.0, 6.0, 2.0], [5.0, 4.0, 1.5], [3.0, 3.0, 1.0]])  # gaps s3/s2 = 1/3 .. 1/3
    mats = []
    for s in spectra:
        u = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64)).Q
        v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
        sv = torch.cat([s.double(), torch.linspace(0.9, 0.1, n - 3, dtype=torch.float64)])
        mats.append(u @ torch.diag(sv) @ v.T)
    x = torch.stack(mats).float().reshape(3, -1)
    xd = x.double().view(3, m, n)
    sv = torch.linalg.svdvals(xd)
    optimal = sv[:, r:].square().sum(1).sqrt() / xd.norm(dim=(1, 2))

    codec = PowerSGD([(m, n)], rank=r)
    state, errors = None, []
    for k in range(rounds):
        out, _, state = codec.roundtrip(x, state, gen(100 + k))  # the generator only draws the first Q
        errors.append((x.double() - out.double()).norm(dim=1) / x.double().norm(dim=1))
    assert (errors[-1] - optimal).abs().max() <= 1e-4, (errors[-1], optimal)
    assert (errors[-1] >= optimal - 1e-6).all()  # no rank-2 matrix beats the SVD
    assert (errors[0] - optimal).max() > 1e-2  # one step from a random start is far off: the test can tell


def test_p_is_orthonormal_even_when_m_q_is_nearly_rank_deficient():
    g = gen(9)
    base = torch.randn(200, 1, generator=g, dtype=torch.float64)
    cases = {
        "random": torch.randn(4, 200, 3, generator=g, dtype=torch.float64),
        # columns 2, 3 = column 1 + 1e-6 noise: one Gram-Schmidt pass would leave them ~1e-10 off orthogonal
        "near": base + 1e-6 * torch.randn(4, 200, 3, generator=g, dtype=torch.float64),
    }
    for name, p in cases.items():
        q = orthonormalize(p)
        gram = q.transpose(1, 2) @ q
        assert torch.allclose(gram, torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-12), name
        assert (torch.diagonal(q.transpose(1, 2) @ p, dim1=1, dim2=2) > 0).all(), name  # R's diagonal > 0
    exact = base.expand(2, 200, 3).clone()  # exactly dependent: the last two columns are dropped
    q = orthonormalize(exact)
    assert q[:, :, 1:].abs().max() == 0 and torch.allclose(q[:, :, 0:1], base / base.norm(), atol=1e-15)
    assert orthonormalize(torch.zeros(2, 5, 2, dtype=torch.float64)).abs().max() == 0


def test_state_is_the_last_q_and_warm_starts_the_next_round():
    codec = PowerSGD([(6, 9), (6,)], rank=2)
    x = torch.randn(3, codec.dim, generator=gen(10))
    _, _, state = codec.roundtrip(x, None, gen(11))
    y = torch.randn(3, codec.dim, generator=gen(12))
    out, _, new_state = codec.roundtrip(y, state, gen(13))
    # by hand in fp64 from the kept Q: P = orth(M Q), Q' = M^T P, M_hat = P Q'^T
    for i in range(3):
        mi = y[i, :54].double().view(6, 9)
        p, _ = torch.linalg.qr(mi @ state[i].double().view(9, 2))
        p = p * torch.sign(torch.diagonal(p.T @ (mi @ state[i].double().view(9, 2))))  # Gram-Schmidt signs
        q = mi.T @ p.float().double()
        assert torch.allclose(new_state[i].double(), q.reshape(-1), rtol=1e-5, atol=1e-6)
        assert torch.allclose(out[i, :54].double(), (p @ q.T).reshape(-1), rtol=1e-5, atol=1e-5)
    # a warm row never touches the generator's values
    assert torch.equal(codec.roundtrip(y, state, gen(99))[0], out)
    assert torch.equal(codec.roundtrip(y, state)[0], out)  # nor needs one


def test_zero_state_rows_draw_from_the_generator_deterministically():
    codec = PowerSGD([(8, 10), (8,), (5, 6)], rank=1)
    x = torch.randn(4, codec.dim, generator=gen(20))
    _, _, warm = codec.roundtrip(x, None, gen(21))
    state = warm.clone()
    state[[1, 3]] = 0.0  # rows 1 and 3: no state yet
    a, b, c = (codec.roundtrip(x, state, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[0][1], c[0][1]) and not torch.equal(a[0][3], c[0][3])  # another seed, other Q
    assert torch.equal(a[0][[0, 2]], c[0][[0, 2]])  # warm rows ignore the generator
    # the draw is randn(n, state_dim) from the generator, used where a column of Q is zero
    fresh = torch.randn(4, codec.state_dim, generator=gen(7))
    assert torch.equal(codec.start(state, 4, gen(7))[[1, 3]], fresh[[1, 3]])
    assert torch.equal(codec.start(state, 4, gen(7))[[0, 2]], state[[0, 2]])
    # no state at all is a zero state
    assert torch.equal(codec.roundtrip(x, None, gen(7))[0], codec.roundtrip(x, torch.zeros_like(state), gen(7))[0])
    with pytest.raises(ValueError, match="needs a generator"):
        codec.roundtrip(x, state)


def test_no_absolute_epsilon_scaling_by_powers_of_two_is_exact():
    # the reference divides by ||p|| + 1e-8; P scales as ||M||^2, so tiny client updates would shrink
    codec = PowerSGD([(12, 15), (12,)], rank=2)
    x = torch.randn(2, codec.dim, generator=gen(30))
    _, _, state = codec.roundtrip(x, None, gen(31))
    out, _, q = codec.roundtrip(x, state)
    for k in (-60, -20, 30):
        scaled, _, qs = codec.roundtrip(x * 2.0**k, state)
        assert torch.equal(scaled, out * 2.0**k) and torch.equal(qs, q * 2.0**k), k


def test_a_layer_of_zeros_decodes_to_zeros_and_redraws_its_q():
    codec = PowerSGD([(4, 6)], rank=2)
    x = torch.zeros(1, 24)
    out, _, state = codec.roundtrip(x, None, gen(40))
    assert torch.equal(out, x) and state.abs().max() == 0  # Q = M^T P = 0: no state, drawn next round
    assert_fast_equals_wire(codec, x, state, seed=41)


def test_bad_input_is_refused():
    codec = PowerSGD([(4, 6), (4,)], rank=1)
    x = torch.randn(2, 28, generator=gen(50))
    q = codec.start(None, 1, gen(51))[0]
    msg = codec.encode(x[0], q)
    for bad in (msg[:-1], msg + b"\x00", b""):
        with pytest.raises(ValueError, match="bytes, expected"):
            codec.decode(bad, 28)
    with pytest.raises(ValueError, match="d=27"):
        codec.decode(msg, 27)
    with pytest.raises(ValueError, match="zero column"):
        codec.encode(x[0], torch.zeros(codec.state_dim))  # the wire path draws nothing
    with pytest.raises(ValueError, match="expected d=28"):
        codec.encode(x[0, :27], q)
    with pytest.raises(ValueError, match="expected d=28"):
        codec.roundtrip(x[:, :27], None, gen(0))
    with pytest.raises(ValueError, match="state of shape"):
        codec.roundtrip(x, torch.ones(2, 5))
    for make, match in [
        (lambda: PowerSGD([(4, 6)], rank=0), "rank=0"),
        (lambda: PowerSGD([(4, 6)], rank=1.5), "rank=1.5"),
        (lambda: PowerSGD([(4, 6)], min_compression=-1), "min_compression=-1"),
        (lambda: PowerSGD([(4, 6)], min_compression=float("nan")), "min_compression=nan"),
        (lambda: PowerSGD([(4, -6)]), "negative size"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()
    assert PowerSGD.stateful and PowerSGD.name == "powersgd"


def test_numpy_bmm_and_rank1_expand_match_torch():
    """The CPU product through numpy's matmul is torch.bmm's product (fp64, to ~1e-15), on
    transposed views too; the rank-1 expansion ``P * Q^T`` is bmm's one product per entry, bit for bit."""
    from fedbench.compress.powersgd import bmm, expand

    g = gen(3)
    m = torch.randn(4, 7, 5, generator=g, dtype=torch.float64)
    q = torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(bmm(m, q), torch.bmm(m, q), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(
        bmm(q.transpose(1, 2), m.transpose(1, 2)),
        torch.bmm(q.transpose(1, 2), m.transpose(1, 2)),
        rtol=1e-13,
        atol=1e-14,
    )
    p1, q1 = torch.randn(4, 7, 1, generator=g), torch.randn(4, 5, 1, generator=g)
    assert torch.equal(bits_of(expand(p1, q1)), bits_of(torch.bmm(p1, q1.transpose(1, 2))))
    # rank 2 by hand: [[1, 2]] [[3, 4]]^T = 1*3 + 2*4 = 11
    assert expand(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[3.0, 4.0]]])).tolist() == [[[11.0]]]
