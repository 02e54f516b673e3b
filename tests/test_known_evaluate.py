"""Known-answer tests of ``fedbench.evaluate``: every expected value is computed by hand (or by a
plain-Python loop written from the definition), never by the library."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fedbench.evaluate import client_accuracy, fairness, per_sample

# ---------------------------------------------------------------------------------------------
# per_sample: a 2 -> 3 linear model with hand-set weights
# ---------------------------------------------------------------------------------------------

# logits(x) = W x + b with W = [[1, 0], [0, 1], [-1, -1]], b = [0, 0, 0.5], i.e.
# (x0, x1, 0.5 - x0 - x1)
W = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
B = [0.0, 0.0, 0.5]
X = [
    (2.0, 0.0),  # logits ( 2.0,  0.0, -1.5) -> class 0
    (0.0, 2.0),  # ( 0.0,  2.0, -1.5) -> 1
    (-1.0, -1.0),  # (-1.0, -1.0,  2.5) -> 2
    (1.0, 0.5),  # ( 1.0,  0.5, -1.0) -> 0
    (0.2, 1.0),  # ( 0.2,  1.0, -0.7) -> 1
    (-2.0, 0.5),  # (-2.0,  0.5,  2.0) -> 2
    (3.0, 1.0),  # ( 3.0,  1.0, -3.5) -> 0
    (0.0, -1.0),  # ( 0.0, -1.0,  1.5) -> 2
    (0.5, 0.4),  # ( 0.5,  0.4, -0.4) -> 0
    (-0.5, -0.5),  # (-0.5, -0.5,  1.5) -> 2
]
Y = [0, 1, 2, 1, 1, 0, 0, 2, 2, 2]
ARGMAX = [0, 1, 2, 0, 1, 2, 0, 2, 0, 2]  # read off the comments above
CORRECT = [a == y for a, y in zip(ARGMAX, Y, strict=True)]
assert CORRECT == [True, True, True, False, True, False, True, True, False, True]


def hand_logits(x):
    return [x[0], x[1], 0.5 - x[0] - x[1]]


def hand_loss(x, y):
    z = hand_logits(x)
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def model_and_params():
    model = nn.Linear(2, 3)
    with torch.no_grad():  # the module's own weights are wrong on purpose: only ``params`` may be used
        model.weight.fill_(0.3)
        model.bias.fill_(-7.0)
    params = {"weight": torch.tensor(W), "bias": torch.tensor(B)}
    return model, params


@pytest.mark.parametrize("batch_size", [3, 1, 4, 10, 1000])
def test_per_sample_by_hand(batch_size):
    model, params = model_and_params()
    x, y = torch.tensor(X), torch.tensor(Y)
    loss, correct = per_sample(model, params, x, y, batch_size)
    assert loss.shape == (10,) and correct.shape == (10,)
    assert correct.dtype == torch.bool
    assert correct.tolist() == CORRECT
    want = [hand_loss(xi, yi) for xi, yi in zip(X, Y, strict=True)]
    assert loss.tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)
    # two values worked out fully: sample 0, logits (2, 0, -1.5), y = 0: log(e^2 + 1 + e^-1.5) - 2
    assert loss[0].item() == pytest.approx(math.log(math.e**2 + 1 + math.exp(-1.5)) - 2, rel=1e-6)
    # sample 5, logits (-2, 0.5, 2), y = 0: log(e^-2 + e^0.5 + e^2) + 2
    assert loss[5].item() == pytest.approx(math.log(math.exp(-2) + math.exp(0.5) + math.exp(2)) + 2, rel=1e-6)


def test_per_sample_no_grad_and_params_untouched():
    model, params = model_and_params()
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss, _ = per_sample(model, params, torch.tensor(X), torch.tensor(Y), 3)
    assert not loss.requires_grad
    assert params["weight"].tolist() == W and params["bias"].tolist() == B


# ---------------------------------------------------------------------------------------------
# client_accuracy
# ---------------------------------------------------------------------------------------------

#                        0  1  2   3  4  5  6   7  8  9 10 11
HAND_CORRECT = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1]
HAND_OWNER = [2, 0, 0, -1, 2, 1, 0, -1, 2, 4, 4, 2]
# client 0: samples 1, 2, 6      -> 0, 1, 0    -> 1/3
# client 1: sample 5             -> 1          -> 1
# client 2: samples 0, 4, 8, 11  -> 1, 0, 1, 1 -> 3/4
# client 3: none                                -> NaN
# client 4: samples 9, 10        -> 1, 0       -> 1/2
# client 5: none (a trailing empty client)      -> NaN
# samples 3 and 7 (owner -1, correct 1 and 0) belong to no one and count nowhere
HAND_ACC = [1 / 3, 1.0, 0.75, math.nan, 0.5, math.nan]


def test_client_accuracy_by_hand():
    correct = torch.tensor(HAND_CORRECT, dtype=torch.bool)
    owner = torch.tensor(HAND_OWNER)
    acc = client_accuracy(correct, owner, 6)
    assert isinstance(acc, np.ndarray) and acc.dtype == np.float64 and acc.shape == (6,)
    for c, want in enumerate(HAND_ACC):
        if math.isnan(want):
            assert math.isnan(acc[c]), f"client {c} holds no samples, got {acc[c]}"
        else:
            assert acc[c] == pytest.approx(want, abs=1e-12), f"client {c}"


def test_client_accuracy_unowned_samples_do_not_count():
    # flipping the correctness of the unowned samples changes nothing
    flipped = list(HAND_CORRECT)
    flipped[3], flipped[7] = 1 - flipped[3], 1 - flipped[7]
    a = client_accuracy(torch.tensor(HAND_CORRECT, dtype=torch.bool), torch.tensor(HAND_OWNER), 6)
    b = client_accuracy(torch.tensor(flipped, dtype=torch.bool), torch.tensor(HAND_OWNER), 6)
    np.testing.assert_array_equal(a, b)


def test_client_accuracy_single_sample_clients():
    # each client holds one sample, so accuracy[c] is exactly correct[position of c]
    owner = torch.tensor([3, 1, 4, 0, 2])
    correct = torch.tensor([True, False, False, True, True])
    acc = client_accuracy(correct, owner, 5)
    assert acc.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]


def ref_client_accuracy(correct, owner, num_clients):
    out = []
    for c in range(num_clients):
        mine = [int(k) for k, o in zip(correct, owner, strict=True) if o == c]
        out.append(sum(mine) / len(mine) if mine else math.nan)
    return out


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.tuples(st.integers(-1, n - 1), st.booleans()), max_size=40),
        )
    )
)
def test_client_accuracy_equals_loop(case):
    num_clients, rows = case
    owner = [o for o, _ in rows]
    correct = [c for _, c in rows]
    acc = client_accuracy(torch.tensor(correct, dtype=torch.bool), torch.tensor(owner, dtype=torch.int64), num_clients)
    want = ref_client_accuracy(correct, owner, num_clients)
    assert acc.shape == (num_clients,)
    np.testing.assert_allclose(acc, want, rtol=0, atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# fairness
# ---------------------------------------------------------------------------------------------


def test_fairness_by_hand():
    # the NaN is an empty client: it has no accuracy and is left out of every statistic, so these are
    # the statistics of the 5 clients that hold data: 0.2, 0.5, 0.9, 0.4, 1.0
    acc = np.array([0.2, 0.5, math.nan, 0.9, 0.4, 1.0])
    f = fairness(acc)
    assert set(f) == {"client_acc_mean", "client_acc_std", "client_acc_p10", "client_acc_min"}
    assert all(type(v) is float for v in f.values())
    assert f["client_acc_mean"] == pytest.approx(3.0 / 5)
    # population std (ddof=0), as implemented (the README only says "std"):
    # deviations -0.4, -0.1, 0.3, -0.2, 0.4 -> squares sum 0.46 -> sqrt(0.46 / 5)
    assert f["client_acc_std"] == pytest.approx(math.sqrt(0.46 / 5))
    # numpy's default (linear) percentile: sorted 0.2, 0.4, 0.5, 0.9, 1.0; rank 0.1 * (5 - 1) = 0.4
    # -> 0.2 + 0.4 * (0.4 - 0.2) = 0.28
    assert f["client_acc_p10"] == pytest.approx(0.28)
    assert f["client_acc_min"] == 0.2
    assert acc.size == 6 and math.isnan(acc[2])  # the caller's array is not modified


def test_fairness_single_client_and_equal_clients():
    assert fairness(np.array([math.nan, 0.7, math.nan])) == pytest.approx(
        {"client_acc_mean": 0.7, "client_acc_std": 0.0, "client_acc_p10": 0.7, "client_acc_min": 0.7}
    )
    f = fairness(np.array([0.25] * 4))
    assert f == pytest.approx(
        {"client_acc_mean": 0.25, "client_acc_std": 0.0, "client_acc_p10": 0.25, "client_acc_min": 0.25}
    )


def test_fairness_of_hand_client_accuracies():
    # end to end on the hand case above: clients 3 and 5 are empty; the rest are 1/3, 1, 3/4, 1/2
    acc = client_accuracy(torch.tensor(HAND_CORRECT, dtype=torch.bool), torch.tensor(HAND_OWNER), 6)
    f = fairness(acc)
    vals = [1 / 3, 1.0, 0.75, 0.5]
    mean = sum(vals) / 4  # 31/48
    assert f["client_acc_mean"] == pytest.approx(31 / 48)
    assert f["client_acc_std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in vals) / 4))
    # sorted 1/3, 1/2, 3/4, 1; rank 0.1 * 3 = 0.3 -> 1/3 + 0.3 * (1/2 - 1/3) = 0.38333...
    assert f["client_acc_p10"] == pytest.approx(1 / 3 + 0.3 * (1 / 6))
    assert f["client_acc_min"] == pytest.approx(1 / 3)


def ref_fairness(values):
    v = sorted(x for x in values if not math.isnan(x))
    n = len(v)
    mean = sum(v) / n
    h = 0.1 * (n - 1)
    lo = math.floor(h)
    p10 = v[lo] + (h - lo) * (v[min(lo + 1, n - 1)] - v[lo])
    return {
        "client_acc_mean": mean,
        "client_acc_std": math.sqrt(sum((x - mean) ** 2 for x in v) / n),
        "client_acc_p10": p10,
        "client_acc_min": v[0],
    }


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), min_size=1, max_size=30).filter(
        lambda v: any(not math.isnan(x) for x in v)
    )
)
def test_fairness_equals_definition(values):
    got = fairness(np.array(values, dtype=np.float64))
    want = ref_fairness(values)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_fairness_with_no_client_holding_data_is_all_nan():
    stats = fairness(np.array([np.nan, np.nan]))
    assert set(stats) == {"client_acc_mean", "client_acc_std", "client_acc_p10", "client_acc_min"}
    assert all(math.isnan(v) for v in stats.values())
