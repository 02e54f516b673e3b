"""Known answers for the mutants of the codecs' SplitMix64 uniforms (``fedbench.compress.draws``,
``_fused.fill_uniforms``, the codecs' ``roundtrip``) that ``tests/test_draws.py`` let through:
``_int64`` on its own, keys given as a list or another integer dtype, and the routing of a
non-CPU device (the torch-op path) checked on torch's ``meta`` device, which runs here without a
GPU (shapes, dtypes and devices only; the numbers are the CPU tests')."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_draws import PUBLISHED, M, uniforms_by_hand

from fedbench.compress import QSGD, Uniform
from fedbench.compress._fused import fill_uniforms
from fedbench.compress.draws import GAMMA, MIX1, MIX2, Uniforms, _int64, as_tensor, draw_uniforms, splitmix_uniforms


def test_int64_is_the_uint64_bit_pattern():
    # a uint64 c and its int64 agree below 2^63; from 2^63 on the int64 is c - 2^64
    cases = {0: 0, 126: 126, 2**62: 2**62, 2**63 - 1: 2**63 - 1, 2**63: -(2**63), M - 1: -1}
    for c, want in cases.items():
        assert _int64(c) == want
    # the three constants, against numpy's reinterpretation of the same 64 bits
    for c in (GAMMA, MIX1, MIX2):
        assert _int64(c) == int(np.array([c], dtype=np.uint64).view(np.int64)[0]) == c - M


@pytest.mark.parametrize(
    "keys",
    [[1234567, M - 1], np.array([1234567, 99], dtype=np.uint32), np.array([1234567, 2**40], dtype=np.int64)],
    ids=["list", "uint32", "int64"],
)
def test_keys_are_taken_as_uint64_values_whatever_their_type(keys):
    values = [int(k) for k in keys]
    want = uniforms_by_hand(values, 5)
    # the published first row: (z >> 40) / 2^24, e.g. 6457827717110365317 >> 40 = 5873360
    assert want[0].tolist() == [(z >> 40) / 2**24 for z in PUBLISHED] and want[0, 0] == 5873360 / 2**24
    for got in (splitmix_uniforms(keys, 5), fill_uniforms(keys, 5), Uniforms(keys, 5).tensor()):
        assert got.dtype == torch.float32 and torch.equal(got, want)


def test_a_non_cpu_device_takes_the_torch_ops_and_stays_on_it():
    u = draw_uniforms(3, 7, torch.Generator().manual_seed(0))
    meta = torch.device("meta")
    for t in (u.tensor("meta"), u.tensor(meta), splitmix_uniforms(u.keys, 7, "meta"), as_tensor(u, "meta")):
        assert t.device.type == "meta" and t.shape == (3, 7) and t.dtype == torch.float32
    t = as_tensor(torch.ones(2, 3, dtype=torch.float64), "meta")
    assert t.device.type == "meta" and t.shape == (2, 3) and t.dtype == torch.float32


@pytest.mark.parametrize(
    "codec, nbytes",
    # uniform 4 bits: 8 + ceil(4 * 10 / 8) = 13; qsgd fixed s=4: w = 3, 4 + ceil(10 * (1 + 3) / 8) = 9
    [(Uniform(4), 13), (QSGD(4, coding="fixed"), 9)],
    ids=["uniform", "qsgd_fixed"],
)
def test_a_non_cpu_roundtrip_takes_the_reference_path(codec, nbytes):
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(1)).to("meta")
    u = codec.draw(3, 10, torch.Generator().manual_seed(2))
    decoded, sizes = codec.roundtrip(x, u)
    assert decoded.device.type == "meta" and decoded.shape == (3, 10) and decoded.dtype == torch.float32
    assert sizes.tolist() == [nbytes] * 3
