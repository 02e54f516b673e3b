"""Known-answer tests of the minibatch schedule (``make_schedule``).

Documented rule (``fedbench.engine.make_schedule``, ``LocalSGD``, ``fedbench.rng``): the batches of
client ``c`` in round ``r`` come from ``rng = numpy_rng(seed, "batches", r, c)``; each pass over the
client's data is a fresh ``samples[rng.permutation(n)]`` cut into chunks of ``batch_size`` (the last one
of a pass may be smaller); a client runs ``local_epochs`` passes, or exactly ``local_steps`` batches
when that is set (passes repeat as needed, a partial pass is a prefix). Padding is ``-1``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.engine import make_schedule
from fedbench.rng import numpy_rng

SAMPLES = np.array([3, 9, 11, 20, 21, 40, 41, 42, 50, 77], dtype=np.int64)


def local(batch_size, local_epochs=1, local_steps=None):
    return SimpleNamespace(batch_size=batch_size, local_epochs=local_epochs, local_steps=local_steps)


def ref_batches(samples, batch_size, local_epochs, local_steps, seed, round_, client):
    """The schedule as a list of batches (lists of sample ids), built from the documented rule."""
    samples = [int(s) for s in samples]
    n = len(samples)
    if n == 0:
        return []
    per_pass = -(-n // batch_size)
    total = local_steps if local_steps is not None else local_epochs * per_pass
    rng = numpy_rng(seed, "batches", round_, client)
    batches = []
    while len(batches) < total:
        perm = [samples[i] for i in rng.permutation(n)]
        batches += [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    return batches[:total]


def as_batches(sched):
    """The schedule's rows without padding; also checks the layout of every row."""
    index, lengths = sched.index, sched.lengths
    assert index.dtype == np.int64 and lengths.dtype == np.int64
    assert index.ndim == 2 and lengths.shape == (index.shape[0],) and sched.steps == index.shape[0]
    out = []
    for row, length in zip(index, lengths, strict=True):
        assert 1 <= length <= index.shape[1]
        assert (row[length:] == -1).all(), "padding must be -1"
        assert (row[:length] >= 0).all()
        out.append(row[:length].tolist())
    return out


def check_against_reference(samples, b, epochs, steps, seed, round_, client):
    sched = make_schedule(samples, local(b, epochs, steps), seed, round_, client)
    want = ref_batches(samples, b, epochs, steps, seed, round_, client)
    assert sched.index.shape == (len(want), b)
    assert as_batches(sched) == want
    assert sched.lengths.tolist() == [len(x) for x in want]
    return sched


# ---------------------------------------------------------------------------------------------
# layout, by hand
# ---------------------------------------------------------------------------------------------


def test_epochs_cover_data_exactly_once_by_hand():
    s = make_schedule(SAMPLES, local(4, local_epochs=3), seed=1, round_=2, client=5)
    assert s.steps == 9 and s.index.shape == (9, 4)
    assert s.lengths.tolist() == [4, 4, 2] * 3  # 10 = 4 + 4 + 2 in every pass
    batches = as_batches(s)
    passes = [sum(batches[3 * e : 3 * e + 3], []) for e in range(3)]
    for p in passes:
        assert sorted(p) == SAMPLES.tolist()  # each pass is a permutation of the client's samples
    assert s.index[2, 2:].tolist() == [-1, -1] and s.index[5, 2:].tolist() == [-1, -1]
    assert len({tuple(p) for p in passes}) == 3  # a fresh permutation per pass


def test_divisible_pass_has_no_padding():
    s = make_schedule(SAMPLES, local(5, local_epochs=2), seed=0, round_=0, client=0)
    assert s.lengths.tolist() == [5, 5, 5, 5] and (s.index >= 0).all()


def test_batch_larger_than_data():
    s = make_schedule(SAMPLES[:3], local(8, local_epochs=2), seed=0, round_=1, client=1)
    assert s.index.shape == (2, 8) and s.lengths.tolist() == [3, 3]
    assert (s.index[:, 3:] == -1).all()
    assert sorted(s.index[0, :3].tolist()) == [3, 9, 11] == sorted(s.index[1, :3].tolist())


def test_local_steps_wraps_into_a_fresh_pass():
    # 10 samples in batches of 4: one pass is 3 steps (4, 4, 2); 5 steps = a full pass + 2 batches
    # (8 samples) of a second, fresh permutation
    s = make_schedule(SAMPLES, local(4, local_epochs=99, local_steps=5), seed=3, round_=1, client=2)
    assert s.steps == 5 and s.lengths.tolist() == [4, 4, 2, 4, 4]
    b = as_batches(s)
    assert sorted(sum(b[:3], [])) == SAMPLES.tolist()
    second = sum(b[3:], [])
    assert len(set(second)) == 8 and set(second) <= set(SAMPLES.tolist())
    # the same as the first 5 steps of two full epochs (local_epochs is ignored once local_steps is set)
    two = make_schedule(SAMPLES, local(4, local_epochs=2), seed=3, round_=1, client=2)
    assert np.array_equal(s.index, two.index[:5]) and np.array_equal(s.lengths, two.lengths[:5])
    # the second pass is a new permutation, not the first one repeated
    assert b[3] != b[0] or b[4] != b[1]


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 10])
def test_local_steps_is_a_prefix_of_the_epoch_schedule(steps):
    long = make_schedule(SAMPLES, local(4, local_epochs=4), seed=9, round_=4, client=1)
    s = make_schedule(SAMPLES, local(4, local_steps=steps), seed=9, round_=4, client=1)
    assert s.steps == steps
    assert np.array_equal(s.index, long.index[:steps]) and np.array_equal(s.lengths, long.lengths[:steps])


@pytest.mark.parametrize("steps", [None, 3])
def test_empty_client_has_no_steps(steps):
    s = make_schedule(np.zeros(0, dtype=np.int64), local(4, local_epochs=2, local_steps=steps), 0, 1, 2)
    assert s.steps == 0 and s.index.shape == (0, 4) and s.lengths.shape == (0,)
    assert s.index.dtype == np.int64 and s.lengths.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# randomness: only (seed, round, client)
# ---------------------------------------------------------------------------------------------


def test_same_triple_same_schedule_and_any_change_changes_it():
    lo = local(3, local_epochs=2)
    base = make_schedule(SAMPLES, lo, 4, 6, 2)
    assert np.array_equal(base.index, make_schedule(SAMPLES.copy(), lo, 4, 6, 2).index)
    for seed, round_, client in [(5, 6, 2), (4, 7, 2), (4, 6, 3), (4, 2, 6)]:  # last: round/client swapped
        other = make_schedule(SAMPLES, lo, seed, round_, client)
        assert not np.array_equal(base.index, other.index), (seed, round_, client)


def test_schedule_independent_of_other_clients_and_call_order():
    parts = {c: np.arange(c * 100, c * 100 + 7 + 3 * c, dtype=np.int64) for c in range(6)}
    lo = local(4, local_epochs=2)
    forward = {c: make_schedule(parts[c], lo, 11, 3, c) for c in range(6)}
    backward = {}
    for c in reversed(range(6)):
        make_schedule(parts[(c + 1) % 6], lo, 11, 3, (c + 1) % 6)  # unrelated calls in between
        np.random.default_rng(c).random(10)
        backward[c] = make_schedule(parts[c], lo, 11, 3, c)
    alone = make_schedule(parts[4], lo, 11, 3, 4)
    for c in range(6):
        assert np.array_equal(forward[c].index, backward[c].index)
        assert np.array_equal(forward[c].lengths, backward[c].lengths)
    assert np.array_equal(alone.index, forward[4].index)
    # the global numpy RNG plays no part
    np.random.seed(0)
    a = make_schedule(parts[2], lo, 11, 3, 2)
    np.random.seed(1)
    assert np.array_equal(a.index, make_schedule(parts[2], lo, 11, 3, 2).index)


def test_order_depends_on_positions_not_on_sample_ids():
    # rng.permutation(n) is applied to ``samples``: two clients with the same count, seed, round and id
    # see their samples in the same positional order
    lo = local(3, local_epochs=2)
    a = make_schedule(SAMPLES, lo, 2, 5, 1)
    shifted = make_schedule(SAMPLES + 1000, lo, 2, 5, 1)
    assert np.array_equal(np.where(a.index >= 0, a.index + 1000, -1), shifted.index)


# ---------------------------------------------------------------------------------------------
# the documented rule, rebuilt
# ---------------------------------------------------------------------------------------------

REF_CASES = [
    # (n, batch_size, local_epochs, local_steps)
    (10, 4, 1, None),
    (10, 4, 3, None),
    (10, 4, 1, 2),
    (10, 4, 1, 5),
    (10, 4, 1, 13),
    (12, 3, 2, None),
    (1, 5, 2, None),
    (7, 1, 1, 9),
    (0, 4, 2, None),
    (0, 4, 1, 6),
]


@pytest.mark.parametrize(("n", "b", "epochs", "steps"), REF_CASES)
def test_equals_reference(n, b, epochs, steps):
    samples = np.array(sorted(np.random.default_rng(n).choice(1000, n, replace=False)), dtype=np.int64)
    s = check_against_reference(samples, b, epochs, steps, seed=7, round_=3, client=12)
    per_pass = math.ceil(n / b) if n else 0
    assert s.steps == (0 if n == 0 else (steps if steps is not None else epochs * per_pass))


def test_reference_by_hand():
    # with batch_size = n, step s of an epoch schedule is exactly samples[permutation number s]
    rng = numpy_rng(0, "batches", 1, 2)
    perms = [rng.permutation(10) for _ in range(3)]
    s = make_schedule(SAMPLES, local(10, local_epochs=3), 0, 1, 2)
    assert s.index.tolist() == [SAMPLES[p].tolist() for p in perms]
    assert s.lengths.tolist() == [10, 10, 10]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 40),
    b=st.integers(1, 12),
    epochs=st.integers(1, 3),
    steps=st.one_of(st.none(), st.integers(1, 20)),
    seed=st.integers(0, 2**31),
    round_=st.integers(0, 500),
    client=st.integers(0, 300),
)
def test_property(n, b, epochs, steps, seed, round_, client):
    samples = np.array(sorted(np.random.default_rng(seed).choice(10_000, n, replace=False)), dtype=np.int64)
    s = check_against_reference(samples, b, epochs, steps, seed, round_, client)
    if n == 0:
        assert s.steps == 0
        return
    per_pass = math.ceil(n / b)
    assert s.steps == (steps if steps is not None else epochs * per_pass)
    batches = as_batches(s)
    last = n - (per_pass - 1) * b
    for e in range(math.ceil(s.steps / per_pass)):
        chunk = batches[e * per_pass : (e + 1) * per_pass]
        flat = sum(chunk, [])
        assert len(flat) == len(set(flat)) and set(flat) <= set(samples.tolist())
        assert [len(x) for x in chunk] == ([b] * (per_pass - 1) + [last])[: len(chunk)]
        if len(chunk) == per_pass:
            assert sorted(flat) == samples.tolist()  # a full pass is a permutation


# ---------------------------------------------------------------------------------------------
# per-sample augmentation and feature-skew info, drawn after the permutations
# ---------------------------------------------------------------------------------------------


def ref_sample_info(samples, b, local_epochs, local_steps, seed, round_, client, padding, hflip, noisy):
    """``Schedule.aug`` from the documented order (``make_schedule``, ``fedbench/data/batch.py``): after
    the whole passes' permutations (``ceil(steps / per_pass)`` of them), the same stream draws, for
    every slot of those whole passes, the crop offsets ``(dy, dx)`` in ``[0, 2p]``, then the flip
    bits, then (feature skew with noise) one seed in ``[0, 2**63 - 1)`` per step; the client and the
    slot complete a feature-skew row. The rows past ``steps`` are drawn and dropped, so a
    ``local_steps`` schedule's draws are a prefix of those of the epoch schedule with as many passes
    (not of a longer one: there the flips follow more crop offsets)."""
    n = len(samples)
    per_pass = -(-n // b)
    total = local_steps if local_steps is not None else local_epochs * per_pass
    passes = -(-total // per_pass)
    rng = numpy_rng(seed, "batches", round_, client)
    for _ in range(passes):
        rng.permutation(n)
    rows = passes * per_pass
    crop = rng.integers(0, 2 * padding + 1, size=(rows, b, 2)) if padding else np.zeros((rows, b, 2), np.int64)
    flip = rng.integers(0, 2, size=(rows, b)) if hflip else np.zeros((rows, b), np.int64)
    cols = [crop[..., 0], crop[..., 1], flip]
    if noisy is not None:
        seeds = rng.integers(0, 2**63 - 1, size=rows, dtype=np.int64) if noisy else np.zeros(rows, np.int64)
        cols += [np.full((rows, b), client), np.repeat(seeds[:, None], b, 1), np.tile(np.arange(b), (rows, 1))]
    return np.stack(cols, axis=-1)[:total]


def prep(padding, hflip, noisy=None):
    """The fields of a ``BatchPrep`` that ``make_schedule`` reads; ``noisy=None``: no feature skew."""
    skew = None if noisy is None else SimpleNamespace(noisy=noisy)
    return SimpleNamespace(augments=padding > 0 or hflip, crop_padding=padding, hflip=hflip, skew=skew)


@pytest.mark.parametrize(
    ("b", "epochs", "steps", "padding", "hflip", "noisy"),
    [
        (4, 2, None, 2, True, None),  # whole passes
        (4, 1, 4, 4, True, None),  # 4 steps of 3 per pass: two passes drawn, 6 rows of draws, 4 kept
        (4, 1, 2, 1, False, None),  # crop only, a partial pass
        (3, 1, 5, 0, True, None),  # flips only
        (4, 1, 4, 2, True, True),  # feature skew with noise: a seed per step after the flips
        (4, 3, None, 0, False, True),  # noise without augmentation
        (4, 1, 5, 3, True, False),  # rotation only: no seeds drawn, column 4 stays 0
    ],
)
def test_sample_info_follows_the_documented_draw_order(b, epochs, steps, padding, hflip, noisy):
    s = make_schedule(SAMPLES, local(b, epochs, steps), 5, 2, 7, prep(padding, hflip, noisy))
    want = ref_sample_info(SAMPLES, b, epochs, steps, 5, 2, 7, padding, hflip, noisy)
    assert s.aug.dtype == np.int64 and s.aug.shape == (s.steps, b, 3 if noisy is None else 6)
    assert np.array_equal(s.aug, want)
    assert np.array_equal(s.index, check_against_reference(SAMPLES, b, epochs, steps, 5, 2, 7).index)


@pytest.mark.parametrize(("steps", "passes"), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)])
def test_local_steps_sample_info_is_a_prefix_of_the_epoch_schedule_with_as_many_passes(steps, passes):
    # 10 samples in batches of 4: 3 steps per pass; local_steps=4 to 6 draw two whole passes, as
    # local_epochs=2 does, so their rows are its first rows
    p = prep(2, True, noisy=True)
    whole = make_schedule(SAMPLES, local(4, local_epochs=passes), 1, 3, 4, p)
    s = make_schedule(SAMPLES, local(4, local_steps=steps), 1, 3, 4, p)
    assert np.array_equal(s.aug, whole.aug[:steps])


def test_no_augmentation_and_no_skew_draws_nothing():
    s = make_schedule(SAMPLES, local(4, local_epochs=2), 0, 1, 2, prep(0, False))
    assert s.aug is None
