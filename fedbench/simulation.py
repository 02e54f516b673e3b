"""The federated round pipeline.

One round is a fixed sequence of named stages; each returns its metrics, which are merged into
the round's row::

    select -> broadcast -> local_train -> attack -> uplink -> aggregate -> server_postprocess
           -> server_update -> evaluate

A :class:`~fedbench.round.RoundRecord` travels through the stages: the round's clients, their
stacked updates ``(n, d)`` of ``w_local - w_global``, their extra uploads, sample and step counts,
aggregation weights and the bytes each stage sent. The algorithm (:mod:`fedbench.algorithm`)
plugs into ``broadcast``, ``local_train`` and ``aggregate`` through its hooks; Byzantine clients
(:mod:`fedbench.attack`) act in ``attack``; client transforms (clipping, noise) and the uplink
codec plug into ``uplink``; the aggregation rule (:mod:`fedbench.aggregator`) runs in
``aggregate``; server transforms (server-side DP noise) plug into ``server_postprocess``. The
loop in :meth:`Simulation.step` does not change.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from fedbench.aggregator.stage import AggregatorStage, detection
from fedbench.attack.poison import add_trigger, trigger_value
from fedbench.attack.stage import AttackStage
from fedbench.compress.downlink import DownlinkStage
from fedbench.compress.stage import UplinkStage
from fedbench.config import ConfigError, RunConfig
from fedbench.data import load_dataset
from fedbench.data.skew import feature_skew
from fedbench.engine import FlatParams, LocalRule, make_engine, make_schedule
from fedbench.evaluate import client_accuracy, fairness, per_sample
from fedbench.models import build_model
from fedbench.partition import PARTITIONERS, PartitionError, partition_stats, split_options
from fedbench.registry import entry
from fedbench.rng import numpy_rng
from fedbench.round import RoundRecord, fp32_bytes
from fedbench.state import ClientState


class Diverged(RuntimeError):
    """Loss or weights became NaN/Inf."""


class ClientTransform(NamedTuple):
    """A client-side update transform (clipping, noise, compression...), optax style.

    ``update(record, state) -> (state, metrics)`` changes ``record.updates`` (and may add to
    ``record.payloads``); ``init(d)`` gives its initial state.
    """

    init: Callable[[int], Any]
    update: Callable[[RoundRecord, Any], tuple[Any, dict[str, float]]]


class ServerTransform(NamedTuple):
    """A server-side transform of the aggregate (server DP noise...): ``update(aggregate, state,
    record) -> (aggregate, state, metrics)``."""

    init: Callable[[int], Any]
    update: Callable[[torch.Tensor, Any, RoundRecord], tuple[torch.Tensor, Any, dict[str, float]]]


class Callback(Protocol):
    def on_start(self, sim: Simulation) -> None: ...
    def on_round(self, sim: Simulation, metrics: dict[str, float]) -> None: ...
    def on_end(self, sim: Simulation, summary: dict[str, Any]) -> None: ...


def train_loss(losses: torch.Tensor, num_samples: np.ndarray) -> float:
    """The round's ``train_loss``: each client's mean loss over its local steps, averaged over
    the clients that trained, weighted by their sample counts (as FedAvg weights their models):
    ``sum_i n_i L_i / sum_i n_i``. Clients without data trained no steps and do not count; NaN
    when no selected client had data."""
    n = torch.as_tensor(num_samples, dtype=losses.dtype, device=losses.device)
    if float(n.sum()) == 0:
        return math.nan
    return float((losses * n).sum() / n.sum())


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; other names were checked by ``config.validate``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Simulation:
    """A federated training run: data, partition, model, engine, algorithm and the round pipeline.

    State that lives across rounds, and so what a checkpoint holds: ``params`` (global model),
    ``server_state`` (server optimizer), ``algorithm.state`` (server-side algorithm state),
    ``client_state`` (per-client state store), the transforms' states and ``round``.
    """

    def __init__(
        self,
        run: RunConfig,
        transforms: Sequence[ClientTransform] = (),
        server_transforms: Sequence[ServerTransform] = (),
    ):
        self.run = run
        self.device = resolve_device(run.device)
        self.data = load_dataset(asdict(run.dataset), run.seed, self.device)
        self._partition()
        self.attack = AttackStage(run.attack, run.num_clients, run.seed)
        self._poison()
        try:
            model = build_model(asdict(run.model), self.data.input_shape, self.data.num_classes, seed=run.seed)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model.name={run.model.name!r}: {e}") from None
        self.model = model.to(self.device)
        self.layout = FlatParams(self.model)
        self.params = self.layout.flatten(self.model).clone()
        alg = run.algorithm
        self.local = alg.local_sgd()
        self.algorithm = entry("algorithm", alg.name).impl(alg)
        self.rule = LocalRule(
            lr=self.local.lr,
            momentum=self.local.momentum,
            coef=self.local.weight_decay + self.algorithm.coef,
            constant=self.algorithm.constant,
        )
        eng = run.engine
        try:
            self.engine, self.engine_note = make_engine(
                eng.name,
                self.model,
                self.train_view.x,
                self.train_view.y,
                self.rule,
                alg.batch_size,
                eng.max_pad_fraction,
                eng.max_group_size,
                eng.compile,
                eng.trace,
                eng.trace_after,
                self.train_prep,
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.client_state = ClientState(resolve_device(run.client_state_device))
        self.algorithm.init(self)
        self.server = entry("server_opt", run.server_opt.name).impl(run.server_opt)
        self.server_state = self.server.init(self.params)
        # codecs of the messages (fedbench/compress): None sends fp32
        self.uplink_codec = self._codec("uplink", run.uplink)
        feedback = getattr(run.uplink, "error_feedback", "none")
        self.uplink_stage = UplinkStage(self.uplink_codec, feedback, run.seed, self.client_state, self.layout.dim)
        self.downlink_codec = self._codec("downlink", run.downlink)
        self.downlink_stage = None  # a delta scheme's state; the casts send the model itself
        if hasattr(run.downlink, "cache_rounds"):
            down = run.downlink
            self.downlink_stage = DownlinkStage(
                self.downlink_codec, down.error_feedback, down.cache_rounds, run.seed, run.num_clients, self.layout.dim
            )
        vote = getattr(self.uplink_codec, "vote", None)  # signSGD's majority replaces the aggregator
        f = run.aggregator.assumed_f(run)
        self.aggregator = AggregatorStage(run.aggregator, f, run.seed, self.layout.dim, self.device, vote)
        self.root = self._root_samples() if self.aggregator.needs_root else None
        self.transforms = list(transforms)
        self.transform_states = [t.init(self.layout.dim) for t in self.transforms]
        self.server_transforms = list(server_transforms)
        self.server_transform_states = [t.init(self.layout.dim) for t in self.server_transforms]
        self.round = 0
        self.totals = {"uplink_bytes_cum": 0, "downlink_bytes_cum": 0}

    def _codec(self, group: str, cfg: Any) -> Any:
        """The codec of option ``cfg`` of ``group`` (None: fp32); one built per model (PowerSGD's
        layer shapes) gets the model's parameter shapes."""
        codec = entry(group, cfg.name).impl(cfg)
        if callable(codec) and not hasattr(codec, "roundtrip"):
            codec = codec(self.layout.shapes)
        return codec

    def _partition(self) -> None:
        """The clients' samples (:attr:`parts`), then the training batch function
        (:attr:`train_prep`): the dataset's, with the partition's feature skew (``noise``,
        ``rotation``) when on. Evaluation keeps the dataset's clean ``data.prep``."""
        run = self.run
        opts, keys = split_options(asdict(run.partition))
        name = opts.pop("name")
        labels = self.data.y_train.cpu().numpy()
        if self.data.groups is not None and "groups" in inspect.signature(PARTITIONERS[name]).parameters:
            opts["groups"] = self.data.groups  # per-sample metadata: the natural clients
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
        try:
            skew = feature_skew(run.num_clients, keys["noise"], keys["rotation"], self.data.name, self.data.x_train)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.train_prep = self.data.prep if skew is None else replace(self.data.prep, skew=skew)
        if skew is not None:  # per client, next to sizes and label_hist in partition.json
            self.partition_stats |= {"client_noise": list(skew.sigma), "client_rotation": list(skew.angle)}

    def _poison(self) -> None:
        """The samples the engines train on (:attr:`train_view`): the clean training set, or the
        Byzantine clients' poisoned copy under a data-poisoning attack; and, for a backdoor, the
        triggered test inputs whose label is not the target (the attack success rate's inputs)."""
        data, cfg = self.data, self.run.attack
        if self.attack.kind == "backdoor":
            shape = data.input_shape
            if data.x_train.dtype in (torch.int64, torch.int32) or len(shape) not in (1, 3):
                raise ConfigError(
                    f"attack=backdoor: needs images or feature vectors; dataset={data.name} holds inputs of shape "
                    f"{shape} ({data.x_train.dtype})"
                )
            if cfg.trigger_size > min(shape[-2:] if len(shape) == 3 else shape):
                raise ConfigError(f"attack.trigger_size={cfg.trigger_size}: larger than the inputs {shape}")
        if getattr(cfg, "target", None) is not None and cfg.target >= data.num_classes:
            raise ConfigError(f"attack.target={cfg.target}: no such class; allowed: 0 <= target < {data.num_classes}")
        self.train_view = self.attack.training_view(data.x_train, data.y_train, self.parts, data.num_classes)
        self.backdoor_test = None
        if self.attack.kind == "backdoor":
            keep = data.y_test != cfg.target
            x = data.x_test[keep]
            self.backdoor_test = add_trigger(x, cfg.trigger_size, trigger_value(data.x_train)).to(x.dtype)

    def _root_samples(self) -> np.ndarray:
        """FLTrust's root dataset: ``root_size`` training samples the server holds, drawn from the
        ``aggregator`` stream among the samples of honest clients (the server's data is clean)."""
        size = self.run.aggregator.root_size
        owner = self.owner.cpu().numpy()
        clean = np.flatnonzero(~np.isin(owner, self.attack.byzantine))
        if size > len(clean):
            raise ConfigError(f"aggregator.root_size={size}: only {len(clean)} clean training samples")
        return np.sort(numpy_rng(self.run.seed, "aggregator").choice(clean, size, replace=False))

    # ---- checkpoint -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that carries over from one round to the next, as tensors, numbers and strings
        (``torch.load(weights_only=True)`` reads it back). Randomness needs no entry: every stream
        is keyed by (seed, round, client), so round ``r`` draws the same whatever came before."""
        return {
            "round": self.round,
            "params": self.params,
            "server_state": self.server_state,
            "algorithm": self.algorithm.state_dict(),
            "client_state": self.client_state.state_dict(),
            "engine": self.engine.state_dict(),
            "totals": dict(self.totals),
            "aggregator": self.aggregator.state_dict(),
            "downlink": {} if self.downlink_stage is None else self.downlink_stage.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` of a simulation of the same config. Client and server
        transforms keep their own state and are not restored here."""
        if self.transforms or self.server_transforms:
            raise ValueError("cannot restore a simulation with client or server transforms yet")
        self.round = int(state["round"])
        self.params = state["params"].to(self.device)
        server = state["server_state"]
        self.server_state = None if server is None else {k: v.to(self.device) for k, v in server.items()}
        self.algorithm.load_state_dict({k: v.to(self.device) for k, v in state["algorithm"].items()})
        self.client_state.load_state_dict(state["client_state"])
        self.engine.load_state_dict(state["engine"])
        self.totals = {k: int(v) for k, v in state["totals"].items()}
        self.aggregator.load_state_dict(state.get("aggregator", {}))
        if self.downlink_stage is not None:
            self.downlink_stage.load_state_dict(state["downlink"], self.device)

    # ---- stages ----------------------------------------------------------------------------------
    def select(self, r: int) -> tuple[RoundRecord, dict[str, float]]:
        """Uniform sampling without replacement from the ``sampling`` stream keyed by round."""
        rng = numpy_rng(self.run.seed, "sampling", r)
        chosen = np.sort(rng.choice(self.run.num_clients, self.run.clients_per_round, replace=False))
        byzantine = self.attack.mask(chosen)
        record = RoundRecord(round=r, clients=chosen, num_samples=self.sizes[chosen], byzantine=byzantine)
        return record, {"num_selected": len(chosen)}

    def broadcast(self, record: RoundRecord) -> tuple[torch.Tensor, dict[str, float]]:
        """The global model, and the algorithm's payloads (as fp32), to every selected client.
        A cast downlink (``fp16``, ``bf16``) sends the model itself and the clients train from the
        decoded copy (their updates are taken against it; the server keeps its fp32 model); a
        delta scheme sends each client the compressed deltas it missed
        (:mod:`fedbench.compress.downlink`), and clients train from the public model."""
        metrics: dict[str, float] = {}
        w0 = self.params
        full = fp32_bytes(self.params)
        if self.downlink_stage is not None:
            metrics = self.downlink_stage.send(record)
        elif self.downlink_codec is None:
            record.add_bytes("downlink", "model", record.n * full)
        else:
            decoded, nbytes = self.downlink_codec.roundtrip(self.params.view(1, -1))
            record.add_bytes("downlink", "model", record.n * int(nbytes[0]))
            metrics["downlink_compression"] = full / int(nbytes[0])
            w0 = decoded[0]
        for name, t in self.algorithm.broadcast_payloads(self).items():
            record.add_bytes("downlink", name, record.n * fp32_bytes(t))
        return w0, metrics

    def local_train(self, record: RoundRecord, w0: torch.Tensor) -> dict[str, float]:
        """Every selected client trains from ``w0`` with the local rule and its constant term
        (Byzantine clients on their poisoned data under a data-poisoning attack); with FLTrust the
        server trains on its root dataset too."""
        parts = self.train_view.parts
        schedules = [
            make_schedule(parts[c], self.local, self.run.seed, record.round, int(c), self.train_prep)
            for c in record.clients
        ]
        if self.root is not None:
            record.root_update = self._root_update(record.round, w0)
        record.steps = np.array([s.steps for s in schedules], dtype=np.int64)
        const = self.algorithm.local_constant(self, record, w0)
        local, record.losses = self.engine.train(w0, schedules, const)
        record.updates = local - w0
        record.weights = torch.as_tensor(record.num_samples, dtype=w0.dtype, device=w0.device)
        metrics = self.algorithm.after_local(self, record, w0)
        return {"train_loss": train_loss(record.losses, record.num_samples), **metrics}

    def _root_update(self, r: int, w0: torch.Tensor) -> torch.Tensor:
        """The server's own update on its root dataset, trained like a client's (a virtual client
        with id ``num_clients``, so its batches have their own stream key)."""
        virtual = self.run.num_clients
        schedule = make_schedule(self.root, self.local, self.run.seed, r, virtual, self.data.prep)
        rec = RoundRecord(round=r, clients=np.array([virtual]), num_samples=np.array([len(self.root)]))
        const = self.algorithm.local_constant(self, rec, w0)
        local, _ = self.engine.train(w0, [schedule], const)
        return local[0] - w0

    def attack_stage(self, record: RoundRecord) -> dict[str, float]:
        """The selected Byzantine clients replace their updates (model poisoning) or scale them
        (backdoor boosting); see :class:`fedbench.attack.stage.AttackStage`."""
        if not self.attack.active:
            return {}
        return self.attack(record, self.aggregator.rule(record.round, record.root_update))

    def uplink(self, record: RoundRecord) -> dict[str, float]:
        """Client transforms in order, then every upload counted as it is sent: a transform that
        encodes an upload (compression) counts its bytes itself; the rest go as fp32."""
        metrics: dict[str, float] = {}
        for i, t in enumerate(self.transforms):
            self.transform_states[i], m = t.update(record, self.transform_states[i])
            metrics.update(m)
        if self.uplink_codec is not None:  # last: what goes on the wire is a message of the codec
            metrics.update(self.uplink_stage(record))
        for name, t in {"update": record.updates, **record.payloads}.items():
            if f"uplink/{name}" not in record.bytes:
                record.add_bytes("uplink", name, fp32_bytes(t))
        return metrics

    def aggregate(self, record: RoundRecord) -> tuple[torch.Tensor, dict[str, float]]:
        """The aggregation rule over the updates and weights, then the algorithm's server step.
        Metrics: ``aggregate_time_s``; with an attack, and a rule that rejects or down-weights
        clients, the detection precision and recall against the true Byzantine clients."""
        metrics: dict[str, float] = {"aggregate_time_s": math.nan}
        if record.weights.sum() == 0:  # every selected client is empty: nothing to learn from
            aggregate = torch.zeros_like(record.updates[0])
        else:
            _sync(self.device)
            t0 = time.perf_counter()
            out = self.aggregator(record.updates, record.weights, record.round, record.root_update)
            _sync(self.device)
            metrics["aggregate_time_s"] = time.perf_counter() - t0
            aggregate = out.value
            if self.attack.active and out.flagged is not None:
                byz = torch.as_tensor(record.byzantine, device=out.flagged.device)
                metrics |= detection(out.flagged, byz)
        aggregate, m = self.algorithm.server_step(self, record, aggregate)
        return aggregate, metrics | m

    def server_postprocess(self, aggregate: torch.Tensor, record: RoundRecord) -> tuple[torch.Tensor, dict[str, float]]:
        metrics: dict[str, float] = {}
        for i, t in enumerate(self.server_transforms):
            aggregate, self.server_transform_states[i], m = t.update(aggregate, self.server_transform_states[i], record)
            metrics.update(m)
        return aggregate, metrics

    def server_update(self, aggregate: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The server optimizer's step on the public model; a delta downlink sends (and so
        applies) its compressed message instead (:mod:`fedbench.compress.downlink`)."""
        step, self.server_state, metrics = self.server.update(aggregate, self.server_state)
        if self.downlink_stage is not None:
            step, m = self.downlink_stage.compress(step, self.round + 1)
            metrics = metrics | m
        return self.params + step, metrics

    def evaluate(self) -> dict[str, float]:
        params = self.layout.unflatten(self.params)
        bs = self.run.eval_batch_size
        prep = self.data.prep
        loss, correct = per_sample(self.model, params, self.data.x_test, self.data.y_test, bs, prep)
        out = {"test_acc": float(correct.float().mean()), "test_loss": float(loss.mean())}
        if self.run.client_metrics:
            _, train_correct = per_sample(self.model, params, self.data.x_train, self.data.y_train, bs, prep)
            self.client_acc = client_accuracy(train_correct, self.owner, self.run.num_clients)
            out.update(fairness(self.client_acc))
        if self.backdoor_test is not None:
            target = torch.full((len(self.backdoor_test),), self.run.attack.target, device=self.device)
            _, hit = per_sample(self.model, params, self.backdoor_test, target, bs, prep)
            out["backdoor_asr"] = float(hit.float().mean()) if len(hit) else math.nan
        return out

    # ---- loop ------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """Run one round; returns its metrics row."""
        r = self.round + 1
        t0 = time.perf_counter()
        metrics: dict[str, float] = {"round": r}
        record, m = self.select(r)
        metrics |= m
        w0, m = self.broadcast(record)
        metrics |= m
        metrics |= self.local_train(record, w0)
        metrics |= self.attack_stage(record)
        metrics |= self.uplink(record)
        aggregate, m = self.aggregate(record)
        metrics |= m
        aggregate, m = self.server_postprocess(aggregate, record)
        metrics |= m
        new_params, m = self.server_update(aggregate)
        metrics |= m
        if not bool(torch.isfinite(record.losses).all()) or not bool(torch.isfinite(new_params).all()):
            raise Diverged(f"round {r}: training loss or global weights became NaN/Inf (try a smaller algorithm.lr)")
        self.params = new_params
        self.round = r
        self.last_record = record
        metrics["uplink_bytes"] = record.total_bytes("uplink")
        metrics["downlink_bytes"] = record.total_bytes("downlink")
        self.totals["uplink_bytes_cum"] += metrics["uplink_bytes"]
        self.totals["downlink_bytes_cum"] += metrics["downlink_bytes"]
        metrics |= self.totals
        metrics["train_time_s"] = time.perf_counter() - t0
        if r % self.run.eval_every == 0 or r == self.run.rounds:
            t1 = time.perf_counter()
            metrics |= self.evaluate()
            metrics["eval_time_s"] = time.perf_counter() - t1
        return metrics


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a stage's wall time is its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
