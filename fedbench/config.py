"""Typed schemas for the Hydra configuration and its validation.

Hydra composes ``conf/config.yaml`` and one option per config group; :func:`validate` then checks
the result against the dataclasses registered for each group's options (unknown keys, wrong
types) and the range checks declared on their fields (:mod:`fedbench.registry`), and returns a
typed :class:`RunConfig`. Every problem becomes a :class:`ConfigError` whose message is one line
naming the key, the bad value and what is allowed. This module knows the groups, not the options.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from fedbench.registry import GROUPS, integer, option, options, range_errors

CONF_DIR = Path(__file__).resolve().parent / "conf"
_DEVICE = (lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N")


# groups without a ``none`` option that a dict config may leave out: their default option
OPTIONAL_GROUPS = {"aggregator": "mean"}


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


@dataclass
class RunConfig:
    """The top-level keys; each config group holds its option's registered dataclass."""

    dataset: Any
    partition: Any
    model: Any
    algorithm: Any
    server_opt: Any
    engine: Any
    logger: Any
    uplink: Any
    downlink: Any
    attack: Any
    aggregator: Any
    seed: int = option(0, integer(0))
    rounds: int = option(100, integer(1))
    num_clients: int = option(20, integer(1))
    clients_per_round: int = option(10, integer(1))
    eval_every: int = option(1, integer(1))
    eval_batch_size: int = option(4096, integer(1))
    client_metrics: bool = True
    device: str = option("auto", _DEVICE)
    client_state_device: str = option("cpu", _DEVICE)
    threads: int = option(0, integer(0, note=" (0: from the launcher's parallelism, see docs/sweeps.md)"))
    progress: bool = True
    checkpoint_every: int = option(10, integer(0, note=" (0: only at the end and when interrupted)"))
    rerun: bool = False


TOP_LEVEL = {f.name for f in fields(RunConfig)}


def _fmt(value: Any) -> str:
    return repr(OmegaConf.to_container(value)) if OmegaConf.is_config(value) else repr(value)


def _typed_group(group: str, node: Any) -> Any:
    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError(f"{group}: must be a config group with a 'name' key (got {_fmt(node)})")
    name = node.name
    known = options(group)
    if name not in known:
        raise ConfigError(f"{group}.name={name!r}: unknown {group}; allowed: {', '.join(known)}")
    schema = known[name].schema
    allowed = [f.name for f in fields(schema)]
    moved = getattr(schema, "moved", {})
    for key in node:
        if key in moved:
            raise ConfigError(f"{group}.{key}={_fmt(node[key])}: this key moved; set {moved[key]} instead")
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
    for g in GROUPS:
        if g not in cfg:
            default = "none" if "none" in options(g) else OPTIONAL_GROUPS.get(g)
            if default is not None:  # an optional stage left out (a dict config written before it existed)
                cfg[g] = {"name": default}
                continue
            raise ConfigError(f"{g}: missing config group; allowed: {', '.join(options(g))}")
    groups = {g: _typed_group(g, cfg[g]) for g in GROUPS}
    scalars = OmegaConf.structured(RunConfig(**groups))
    try:
        typed = OmegaConf.merge(scalars, {k: cfg[k] for k in cfg if k not in GROUPS})
    except (ValidationError, ConfigKeyError) as e:
        raise ConfigError(f"{e.full_key}={_fmt(e.value)}: wrong type ({e.msg.splitlines()[0]})") from None
    run: RunConfig = OmegaConf.to_object(typed)
    _check_ranges(run)
    return run


def _check_ranges(run: RunConfig) -> None:
    """Field checks of the top level and of every group's option, then cross-key checks: the
    top level's own, and each option's ``check(run)`` (returns an error line or None)."""
    errors = range_errors(run)
    for g in GROUPS:
        errors += range_errors(getattr(run, g), f"{g}.")
    if errors:
        raise ConfigError(errors[0])
    if run.clients_per_round > run.num_clients:
        raise ConfigError(
            f"clients_per_round={run.clients_per_round}: more than num_clients={run.num_clients}; "
            "allowed: 1 <= clients_per_round <= num_clients"
        )
    _check_device("device", run.device)
    _check_device("client_state_device", run.client_state_device)
    for g in GROUPS:
        check = getattr(getattr(run, g), "check", None)
        problem = check(run) if check is not None else None
        if problem:
            raise ConfigError(problem)


def _check_device(key: str, name: str) -> None:
    """A CUDA device that this machine lacks is a config error before any run starts."""
    if not name.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    if index >= count:
        allowed = "auto, cpu" + "".join(f", cuda:{i}" for i in range(count)) + (", cuda" if count else "")
        raise ConfigError(f"{key}={name!r}: no such CUDA device on this machine; allowed here: {allowed}")


def to_dict(run: RunConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(run))
