"""Typed schemas for the Hydra configuration and its validation.

Hydra composes ``conf/config.yaml`` and one option per config group; :func:`validate` then checks
the result against these dataclasses (unknown keys, wrong types) and against the allowed ranges,
and returns a typed :class:`RunConfig`. Every problem becomes a :class:`ConfigError` whose message
is one line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

CONF_DIR = Path(__file__).resolve().parent / "conf"


class ConfigError(ValueError):
    """A user mistake in the configuration, reported before any training."""


@contextlib.contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra's compose API initialised on fedbench's config tree (and cleared afterwards)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            yield
    finally:
        GlobalHydra.instance().clear()


def compose(*overrides: str) -> DictConfig:
    """The config the ``fedbench`` command builds from these overrides, not yet validated.

    ``validate(compose("partition.alpha=0.1", "rounds=50"))`` gives the typed run config.
    """
    from hydra import compose as hydra_compose

    with hydra_context():
        return hydra_compose(config_name="config", overrides=list(overrides))


# ---- dataset -------------------------------------------------------------------------------------
@dataclass
class DigitsConfig:
    name: str = "digits"
    test_fraction: float = 0.2


@dataclass
class SyntheticConfig:
    name: str = "synthetic"
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    num_classes: int = 10
    num_train: int = 60000
    num_test: int = 10000
    noise: float = 1.0


# ---- partition -----------------------------------------------------------------------------------
@dataclass
class IIDConfig:
    name: str = "iid"


@dataclass
class DirichletClassConfig:
    name: str = "dirichlet_class"
    alpha: float = 0.5
    min_size: int = 10
    max_attempts: int = 100
    balance: bool = True


@dataclass
class DirichletClientConfig:
    name: str = "dirichlet_client"
    alpha: float = 0.5
    client_size: int | None = None


# ---- model ---------------------------------------------------------------------------------------
@dataclass
class LogRegConfig:
    name: str = "logreg"


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [200, 200])


@dataclass
class CNNConfig:
    name: str = "cnn_small"
    norm: str = "none"
    groups: int = 8


# ---- algorithm, engine, logger -------------------------------------------------------------------
@dataclass
class FedAvgConfig:
    name: str = "fedavg"
    local_epochs: int = 1
    local_steps: int | None = None
    batch_size: int = 10
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    server_lr: float = 1.0
    server_momentum: float = 0.0


@dataclass
class EngineConfig:
    name: str = "auto"
    max_pad_fraction: float = 0.25
    max_group_size: int | None = None
    compile: bool = False
    trace: bool = True
    trace_after: int = 64


@dataclass
class LoggerConfig:
    name: str = "none"
    project: str = "fedbench"
    entity: str | None = None
    mode: str | None = None
    tags: list[str] = field(default_factory=list)


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"digits": DigitsConfig, "synthetic": SyntheticConfig},
    "partition": {
        "iid": IIDConfig,
        "dirichlet_class": DirichletClassConfig,
        "dirichlet_client": DirichletClientConfig,
    },
    "model": {"logreg": LogRegConfig, "mlp": MLPConfig, "cnn_mnist": CNNConfig, "cnn_small": CNNConfig},
    "algorithm": {"fedavg": FedAvgConfig},
    "engine": {"auto": EngineConfig, "vmap": EngineConfig, "sequential": EngineConfig, "fused": EngineConfig},
    "logger": {"none": LoggerConfig, "wandb": LoggerConfig},
}


@dataclass
class RunConfig:
    dataset: Any
    partition: Any
    model: Any
    algorithm: FedAvgConfig
    engine: EngineConfig
    logger: LoggerConfig
    seed: int = 0
    rounds: int = 100
    num_clients: int = 20
    clients_per_round: int = 10
    eval_every: int = 1
    eval_batch_size: int = 4096
    client_metrics: bool = True
    device: str = "auto"
    threads: int = 0
    progress: bool = True


TOP_LEVEL = {f.name for f in fields(RunConfig)}

# (key, test, what is allowed). Keys are dotted paths into the resolved config.
_RULES: list[tuple[str, Any, str]] = [
    ("seed", lambda v: v >= 0, "an integer >= 0"),
    ("rounds", lambda v: v >= 1, "an integer >= 1"),
    ("num_clients", lambda v: v >= 1, "an integer >= 1"),
    ("clients_per_round", lambda v: v >= 1, "an integer >= 1"),
    ("eval_every", lambda v: v >= 1, "an integer >= 1"),
    ("eval_batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("engine.trace_after", lambda v: v >= 0, "an integer >= 0"),
    ("threads", lambda v: v >= 0, "an integer >= 0 (0 keeps torch's default)"),
    ("device", lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N"),
    ("partition.alpha", lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    ("partition.min_size", lambda v: v >= 0, "an integer >= 0"),
    ("partition.max_attempts", lambda v: v >= 1, "an integer >= 1"),
    ("partition.client_size", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("dataset.test_fraction", lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    ("dataset.num_classes", lambda v: v >= 2, "an integer >= 2"),
    ("dataset.num_train", lambda v: v >= 1, "an integer >= 1"),
    ("dataset.num_test", lambda v: v >= 1, "an integer >= 1"),
    ("dataset.noise", lambda v: v >= 0, "a number >= 0"),
    ("dataset.input_shape", lambda v: len(v) >= 1 and all(s >= 1 for s in v), "a non-empty list of sizes >= 1"),
    ("model.hidden", lambda v: all(h >= 1 for h in v), "a list of layer widths >= 1"),
    ("model.norm", lambda v: v in ("none", "group"), "none or group"),
    ("model.groups", lambda v: v >= 1, "an integer >= 1"),
    ("algorithm.local_epochs", lambda v: v >= 1, "an integer >= 1"),
    ("algorithm.local_steps", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("algorithm.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("algorithm.lr", lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0"),
    ("algorithm.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("algorithm.weight_decay", lambda v: v >= 0, "a number >= 0"),
    ("algorithm.server_lr", lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    ("algorithm.server_momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("engine.max_pad_fraction", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("engine.max_group_size", lambda v: v is None or v >= 1, "null or an integer >= 1"),
    ("logger.mode", lambda v: v in (None, "online", "offline", "disabled"), "null, online, offline or disabled"),
]


def _fmt(value: Any) -> str:
    return repr(OmegaConf.to_container(value)) if OmegaConf.is_config(value) else repr(value)


def _typed_group(group: str, node: Any) -> Any:
    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError(f"{group}: must be a config group with a 'name' key (got {_fmt(node)})")
    name = node.name
    options = SCHEMAS[group]
    if name not in options:
        raise ConfigError(f"{group}.name={name!r}: unknown {group}; allowed: {', '.join(options)}")
    schema = options[name]
    allowed = [f.name for f in fields(schema)]
    for key in node:
        if key not in allowed:
            raise ConfigError(
                f"{group}.{key}={_fmt(node[key])}: unknown key for {group} {name!r}; allowed keys: {', '.join(allowed)}"
            )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ValidationError as e:
        key = f"{group}.{e.full_key}" if e.full_key else group
        raise ConfigError(f"{key}={_fmt(e.value)}: wrong type ({e.msg.splitlines()[0]})") from None
    return OmegaConf.to_object(merged)


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Check a composed config and return it typed, or raise :class:`ConfigError`."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    try:
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{e.full_key}: cannot resolve ({e.msg.splitlines()[0]})") from None
    for key in cfg:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}={_fmt(cfg[key])}: unknown key; allowed: {', '.join(sorted(TOP_LEVEL))}")
    groups = {g: _typed_group(g, cfg[g]) if g in cfg else None for g in SCHEMAS}
    for g, v in groups.items():
        if v is None:
            raise ConfigError(f"{g}: missing config group; allowed: {', '.join(SCHEMAS[g])}")
    scalars = OmegaConf.structured(RunConfig(**groups))
    try:
        typed = OmegaConf.merge(scalars, {k: cfg[k] for k in cfg if k not in SCHEMAS})
    except (ValidationError, ConfigKeyError) as e:
        raise ConfigError(f"{e.full_key}={_fmt(e.value)}: wrong type ({e.msg.splitlines()[0]})") from None
    run: RunConfig = OmegaConf.to_object(typed)
    _check_ranges(run)
    return run


def _lookup(run: RunConfig, key: str) -> tuple[bool, Any]:
    node: Any = run
    for part in key.split("."):
        if not hasattr(node, part):
            return False, None
        node = getattr(node, part)
    return True, node


def _check_ranges(run: RunConfig) -> None:
    for key, ok, allowed in _RULES:
        present, value = _lookup(run, key)
        if present and not ok(value):
            raise ConfigError(f"{key}={value!r}: out of range; allowed: {allowed}")
    if run.clients_per_round > run.num_clients:
        raise ConfigError(
            f"clients_per_round={run.clients_per_round}: more than num_clients={run.num_clients}; "
            "allowed: 1 <= clients_per_round <= num_clients"
        )
    _check_device(run.device)
    if run.engine.name == "fused" and run.model.name not in ("logreg", "mlp"):
        raise ConfigError(
            f"engine.name='fused': cannot train model.name={run.model.name!r}; allowed models: logreg, mlp "
            "(use engine=vmap for the others)"
        )


def _check_device(name: str) -> None:
    """A CUDA device that this machine lacks is a config error before any run starts."""
    if not name.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    if index >= count:
        allowed = "auto, cpu" + "".join(f", cuda:{i}" for i in range(count)) + (", cuda" if count else "")
        raise ConfigError(f"device={name!r}: no such CUDA device on this machine; allowed here: {allowed}")


def to_dict(run: RunConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(run))
