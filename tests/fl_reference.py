"""Independent reference implementations for the tests: textbook federated algorithms written
from the papers with ``copy.deepcopy`` and ``torch.optim.SGD``, drawing their own minibatches
from the documented rule. Nothing here calls fedbench's engines, schedule, local rule,
aggregation or algorithms; only the data, the partition and the initial model are shared.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from fedbench.rng import numpy_rng


def reference_batches(samples: np.ndarray, batch_size: int, epochs: int, steps: int | None, seed, r, c):
    """The documented schedule: each pass over the client's data is ``rng.permutation(n)`` of its
    samples (``rng`` the ``batches`` stream keyed by round and client), cut into consecutive
    batches of ``batch_size`` (the last one shorter); ``steps``, when set, takes that many
    batches, starting new passes as needed."""
    n = len(samples)
    if n == 0:
        return []
    rng = numpy_rng(seed, "batches", r, c)
    per_pass = math.ceil(n / batch_size)
    total = steps if steps is not None else epochs * per_pass
    batches = []
    while len(batches) < total:
        perm = samples[rng.permutation(n)]
        batches += [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    return batches[:total]


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def reference_run(run, model, x, y, parts, rounds: int) -> torch.Tensor:
    """``rounds`` rounds of ``run.algorithm`` with server SGD (``run.server_opt``) from ``model``;
    returns the global model as a flat vector."""
    alg, name = run.algorithm, run.algorithm.name
    lr_g, mom_g = run.server_opt.lr, run.server_opt.momentum
    n_clients = run.num_clients
    global_model = copy.deepcopy(model)
    zeros = [torch.zeros_like(p) for p in global_model.parameters()]
    c = [z.clone() for z in zeros]  # SCAFFOLD server control
    c_i: dict[int, list[torch.Tensor]] = {}  # SCAFFOLD client controls
    g_k: dict[int, list[torch.Tensor]] = {}  # FedDyn client gradients
    h = [z.clone() for z in zeros]  # FedDyn server state
    v = [z.clone() for z in zeros]  # server momentum
    for r in range(1, rounds + 1):
        chosen = np.sort(numpy_rng(run.seed, "sampling", r).choice(n_clients, run.clients_per_round, replace=False))
        w0 = [p.detach().clone() for p in global_model.parameters()]
        deltas, sizes, taus, delta_cs = [], [], [], []
        for k in chosen.tolist():
            local = copy.deepcopy(global_model)
            opt = torch.optim.SGD(local.parameters(), lr=alg.lr, momentum=alg.momentum, weight_decay=alg.weight_decay)
            batches = reference_batches(parts[k], alg.batch_size, alg.local_epochs, alg.local_steps, run.seed, r, k)
            ck = c_i.get(k, zeros)
            gk = g_k.get(k, zeros)
            for idx in batches:
                idx = torch.as_tensor(idx)
                opt.zero_grad()
                loss = F.cross_entropy(local(x[idx]), y[idx])
                params = list(local.parameters())
                if name == "fedprox":  # f_k(w) + mu/2 ||w - w_t||^2
                    loss = loss + alg.mu / 2 * sum(((p - q) ** 2).sum() for p, q in zip(params, w0))
                if name == "feddyn":  # L_k(w) - <g_k, w> + alpha/2 ||w - w_t||^2
                    loss = loss - sum((g * p).sum() for g, p in zip(gk, params))
                    loss = loss + alg.alpha / 2 * sum(((p - q) ** 2).sum() for p, q in zip(params, w0))
                loss.backward()
                if name == "scaffold":  # g + c - c_i
                    for p, cs, cc in zip(params, c, ck):
                        p.grad += cs - cc
                opt.step()
            delta = [p.detach() - q for p, q in zip(local.parameters(), w0)]
            tau = len(batches)
            if name == "scaffold" and tau:  # option II
                new_ck = [a - b - d / (tau * alg.lr) for a, b, d in zip(ck, c, delta)]
                delta_cs.append([a - b for a, b in zip(new_ck, ck)])
                c_i[k] = new_ck
            if name == "feddyn":
                g_k[k] = [g - alg.alpha * d for g, d in zip(gk, delta)]
            deltas.append(delta)
            sizes.append(len(parts[k]))
            taus.append(tau)
        p_w = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
        if name == "feddyn":  # unweighted mean over participants
            agg = [sum(d[i] for d in deltas) / len(deltas) for i in range(len(w0))]
            h = [hh - alg.alpha * sum(d[i] for d in deltas) / n_clients for i, hh in enumerate(h)]
            agg = [a - hh / alg.alpha for a, hh in zip(agg, h)]
        elif name == "fednova":
            rho = alg.momentum
            if rho:
                a = [(t - rho * (1 - rho**t) / (1 - rho)) / (1 - rho) for t in taus]
            else:
                a = [float(t) for t in taus]
            tau_eff = sum(float(pw) * ai for pw, ai in zip(p_w, a))
            agg = [tau_eff * sum(float(pw) * d[i] / ai for pw, d, ai in zip(p_w, deltas, a)) for i in range(len(w0))]
        else:
            agg = [sum(float(pw) * d[i] for pw, d in zip(p_w, deltas)) for i in range(len(w0))]
        if name == "scaffold":
            c = [cs + sum(dc[i] for dc in delta_cs) / n_clients for i, cs in enumerate(c)]
        with torch.no_grad():
            for i, p in enumerate(global_model.parameters()):
                v[i] = mom_g * v[i] + agg[i]
                p += lr_g * v[i]
    return _flat(global_model)
