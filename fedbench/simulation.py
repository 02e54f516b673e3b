"""The federated round pipeline.

One round is a fixed sequence of named stages, each returning ``(result, metrics)``::

    select -> broadcast -> local_train -> client_transforms -> aggregate -> server_update -> evaluate

Client updates travel between stages as one stacked tensor ``(n_selected, d)`` of
``w_local - w_global``. New capabilities (compression, attacks, robust aggregation, privacy)
plug into a stage; the loop in :meth:`Simulation.run` does not change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from fedbench.aggregator import weighted_mean
from fedbench.algorithm import server_sgd
from fedbench.config import ConfigError, RunConfig
from fedbench.data import load_dataset
from fedbench.engine import FlatParams, LocalSGD, make_engine, make_schedule
from fedbench.evaluate import client_accuracy, fairness, per_sample
from fedbench.models import build_model
from fedbench.partition import PARTITIONERS, PartitionError, partition_stats
from fedbench.rng import numpy_rng

BYTES_PER_PARAM = 4  # fp32 on the wire, until compression says otherwise


class Diverged(RuntimeError):
    """Loss or weights became NaN/Inf."""


class ClientTransform(NamedTuple):
    """A client-side update transform (clipping, noise, compression...), optax style.

    ``update(updates (n, d), state, client_ids) -> (updates, state, metrics)``.
    """

    init: Callable[[int], Any]
    update: Callable[[torch.Tensor, Any, np.ndarray], tuple[torch.Tensor, Any, dict[str, float]]]


class Callback(Protocol):
    def on_start(self, sim: Simulation) -> None: ...
    def on_round(self, sim: Simulation, metrics: dict[str, float]) -> None: ...
    def on_end(self, sim: Simulation, summary: dict[str, Any]) -> None: ...


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; other names were checked by ``config.validate``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Simulation:
    """A federated training run: data, partition, model, engine and the round pipeline."""

    def __init__(self, run: RunConfig, transforms: Sequence[ClientTransform] = ()):
        self.run = run
        self.device = resolve_device(run.device)
        if run.threads:
            torch.set_num_threads(run.threads)
        self.data = load_dataset(asdict(run.dataset), run.seed, self.device)
        self._partition()
        try:
            model = build_model(asdict(run.model), self.data.input_shape, self.data.num_classes, seed=run.seed)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model.name={run.model.name!r}: {e}") from None
        self.model = model.to(self.device)
        self.layout = FlatParams(self.model)
        self.params = self.layout.flatten(self.model).clone()
        alg = run.algorithm
        self.local = LocalSGD(
            lr=alg.lr,
            batch_size=alg.batch_size,
            local_epochs=alg.local_epochs,
            local_steps=alg.local_steps,
            momentum=alg.momentum,
            weight_decay=alg.weight_decay,
        )
        try:
            self.engine, self.engine_note = make_engine(
                run.engine.name,
                self.model,
                self.data.x_train,
                self.data.y_train,
                self.local,
                run.engine.max_pad_fraction,
                run.engine.max_group_size,
                run.engine.compile,
                run.engine.trace,
                run.engine.trace_after,
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.server = server_sgd(alg.server_lr, alg.server_momentum)
        self.server_state = self.server.init(self.params)
        self.transforms = list(transforms)
        self.transform_states = [t.init(self.layout.dim) for t in self.transforms]
        self.round = 0
        self.totals = {"uplink_bytes_cum": 0, "downlink_bytes_cum": 0}

    def _partition(self) -> None:
        run = self.run
        opts = asdict(run.partition)
        name = opts.pop("name")
        labels = self.data.y_train.cpu().numpy()
        try:
            self.parts = PARTITIONERS[name](labels, run.num_clients, rng=numpy_rng(run.seed, "partition"), **opts)
        except PartitionError as e:
            raise ConfigError(f"partition={name}: {e}") from None
        self.partition_stats = partition_stats(self.parts, labels, self.data.num_classes)
        self.sizes = np.array([len(p) for p in self.parts], dtype=np.int64)
        owner = np.full(len(labels), -1, np.int64)
        for c, idx in enumerate(self.parts):
            owner[idx] = c
        self.owner = torch.as_tensor(owner, device=self.device)

    # ---- stages ----------------------------------------------------------------------------------
    def select(self, r: int) -> tuple[np.ndarray, dict[str, float]]:
        """Uniform sampling without replacement from the ``sampling`` stream keyed by round."""
        rng = numpy_rng(self.run.seed, "sampling", r)
        chosen = np.sort(rng.choice(self.run.num_clients, self.run.clients_per_round, replace=False))
        return chosen, {"num_selected": len(chosen)}

    def broadcast(self, selected: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        sent = len(selected) * self.layout.dim * BYTES_PER_PARAM
        return self.params, {"downlink_bytes": sent}

    def local_train(self, selected: np.ndarray, global_params: torch.Tensor, r: int):
        schedules = [make_schedule(self.parts[c], self.local, self.run.seed, r, int(c)) for c in selected]
        local, losses = self.engine.train(global_params, schedules)
        return local - global_params, {"train_loss": float(losses.mean())}

    def client_transforms(self, updates: torch.Tensor, selected: np.ndarray):
        metrics: dict[str, float] = {}
        for i, t in enumerate(self.transforms):
            updates, self.transform_states[i], m = t.update(updates, self.transform_states[i], selected)
            metrics.update(m)
        sent = updates.shape[0] * updates.shape[1] * BYTES_PER_PARAM
        return updates, {**metrics, "uplink_bytes": sent}

    def aggregate(self, updates: torch.Tensor, selected: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        weights = torch.as_tensor(self.sizes[selected], dtype=updates.dtype, device=updates.device)
        if weights.sum() == 0:  # every selected client is empty: nothing to learn from
            return torch.zeros_like(updates[0]), {}
        return weighted_mean(updates, weights), {}

    def server_update(self, aggregate: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        step, self.server_state = self.server.update(aggregate, self.server_state)
        return self.params + step, {}

    def evaluate(self) -> dict[str, float]:
        params = self.layout.unflatten(self.params)
        bs = self.run.eval_batch_size
        loss, correct = per_sample(self.model, params, self.data.x_test, self.data.y_test, bs)
        out = {"test_acc": float(correct.float().mean()), "test_loss": float(loss.mean())}
        if self.run.client_metrics:
            _, train_correct = per_sample(self.model, params, self.data.x_train, self.data.y_train, bs)
            acc = client_accuracy(train_correct, self.owner, self.run.num_clients)
            out.update(fairness(acc))
        return out

    # ---- loop ------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """Run one round; returns its metrics row."""
        r = self.round + 1
        t0 = time.perf_counter()
        metrics: dict[str, float] = {"round": r}
        selected, m = self.select(r)
        metrics |= m
        global_params, m = self.broadcast(selected)
        metrics |= m
        updates, m = self.local_train(selected, global_params, r)
        metrics |= m
        updates, m = self.client_transforms(updates, selected)
        metrics |= m
        aggregate, m = self.aggregate(updates, selected)
        metrics |= m
        new_params, m = self.server_update(aggregate)
        metrics |= m
        if not math.isfinite(metrics["train_loss"]) or not bool(torch.isfinite(new_params).all()):
            raise Diverged(f"round {r}: training loss or global weights became NaN/Inf (try a smaller algorithm.lr)")
        self.params = new_params
        self.round = r
        self.totals["uplink_bytes_cum"] += metrics["uplink_bytes"]
        self.totals["downlink_bytes_cum"] += metrics["downlink_bytes"]
        metrics |= self.totals
        metrics["train_time_s"] = time.perf_counter() - t0
        if r % self.run.eval_every == 0 or r == self.run.rounds:
            t1 = time.perf_counter()
            metrics |= self.evaluate()
            metrics["eval_time_s"] = time.perf_counter() - t1
        return metrics
