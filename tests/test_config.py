"""fedbench.config.validate: typed RunConfig from composed configs, one-line ConfigErrors."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from fedbench.algorithm import FedAvgConfig
from fedbench.config import CONF_DIR, ConfigError, RunConfig, validate
from fedbench.config import compose as compose_cfg
from fedbench.data.digits import DigitsConfig
from fedbench.engine import EngineConfig
from fedbench.logger import NoLoggerConfig
from fedbench.models.zoo import CNNConfig
from fedbench.partition.dirichlet import DirichletClassConfig
from fedbench.registry import GROUPS, defaults, options
from fedbench.server_opt import SGDConfig

SCHEMAS = {g: {name: e.schema for name, e in options(g).items()} for g in GROUPS}


@functools.lru_cache(maxsize=1)
def _default_container() -> dict:
    return OmegaConf.to_container(compose_cfg(), resolve=True)


def default_dict() -> dict:
    """The default composed config as a plain (mutable) dict."""
    return copy.deepcopy(_default_container())


def config_error(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    msg = str(info.value)
    assert msg, "ConfigError without a message"
    assert "\n" not in msg, f"ConfigError message is not a single line: {msg!r}"
    return msg


# ---- the default and every option ----------------------------------------------------------------
def test_default_config_validates_to_typed_runconfig():
    run = validate(compose_cfg())
    assert isinstance(run, RunConfig)
    assert isinstance(run.dataset, DigitsConfig) and run.dataset.test_fraction == 0.2
    assert isinstance(run.partition, DirichletClassConfig)
    assert run.partition.alpha == 0.5 and run.partition.min_size == 10 and run.partition.max_attempts == 100
    assert run.partition.balance is True
    assert isinstance(run.model, CNNConfig) and run.model.name == "cnn_small" and run.model.norm == "none"
    assert isinstance(run.algorithm, FedAvgConfig)
    assert run.algorithm.lr == 0.05 and run.algorithm.batch_size == 10 and run.algorithm.local_epochs == 1
    assert run.algorithm.local_steps is None and run.algorithm.momentum == 0.0
    assert isinstance(run.server_opt, SGDConfig) and (run.server_opt.lr, run.server_opt.momentum) == (1.0, 0.0)
    assert isinstance(run.engine, EngineConfig) and run.engine.name == "auto"
    assert isinstance(run.logger, NoLoggerConfig) and run.logger.name == "none"
    assert (run.seed, run.rounds, run.num_clients, run.clients_per_round) == (0, 100, 20, 10)
    assert (run.eval_every, run.eval_batch_size, run.threads) == (1, 4096, 0)
    assert run.device == "auto" and run.client_metrics is True and run.progress is True
    # typed, not strings
    assert isinstance(run.rounds, int) and isinstance(run.algorithm.lr, float)


def test_validate_accepts_plain_dict_and_dictconfig_alike():
    assert validate(default_dict()) == validate(compose_cfg())


def _options() -> list[tuple[str, str]]:
    return sorted(
        (group.name, f.stem)
        for group in CONF_DIR.iterdir()
        if group.is_dir() and not group.name.startswith("_")
        for f in group.glob("*.yaml")
    )


def test_config_groups_match_schemas():
    on_disk: dict[str, set[str]] = {}
    for group, option in _options():
        on_disk.setdefault(group, set()).add(option)
    assert on_disk == {g: set(opts) for g, opts in SCHEMAS.items()}


@pytest.mark.parametrize(("group", "option"), _options())
def test_every_group_option_composes_and_validates(group, option, tmp_path, monkeypatch):
    from fedbench.data.files import DATASET_NAMES

    monkeypatch.setenv("FEDBENCH_DATA", str(tmp_path))
    if group == "dataset" and option in DATASET_NAMES:  # file-backed: composes, then wants its files
        with pytest.raises(ConfigError, match=rf"^dataset={option}: .* at {tmp_path}/.*; get them with: "):
            validate(compose_cfg(f"{group}={option}"))
        return
    if group == "dataset" and option in ("femnist", "shakespeare"):  # LEAF folders: the same, in one line
        with pytest.raises(ConfigError, match=rf"^dataset={option}: no LEAF train/ folder in {tmp_path}/leaf/"):
            validate(compose_cfg(f"{group}={option}", "partition=natural"))
        return
    extra = ["dataset=fedprox_synthetic", "model=logreg"] if (group, option) == ("partition", "natural") else []
    run = validate(compose_cfg(f"{group}={option}", *extra))
    node = getattr(run, group)
    assert isinstance(node, SCHEMAS[group][option])
    assert node.name == option


@pytest.mark.parametrize(("group", "option"), _options())
def test_every_yaml_holds_its_dataclass_defaults(group, option):
    """The yaml a user reads and the dataclass the code validates against say the same."""
    on_disk = yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text())
    expected = {**defaults(SCHEMAS[group][option]), "name": option}
    assert on_disk == expected


@pytest.mark.parametrize(("key", "new"), [("server_lr", "server_opt.lr"), ("server_momentum", "server_opt.momentum")])
def test_moved_keys_say_where_they_went(key, new):
    msg = config_error(compose_cfg(f"+algorithm.{key}=0.5"))
    assert msg.startswith(f"algorithm.{key}=0.5") and new in msg


def test_engine_fused_is_gone_with_a_clear_error():
    cfg = default_dict()
    cfg["engine"]["name"] = "fused"
    msg = config_error(cfg)
    assert "engine.name='fused'" in msg and "auto, vmap, sequential" in msg


# ---- range rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "must_contain"),
    [
        (["partition.alpha=0"], ["partition.alpha", "0.0", "> 0"]),
        (["partition.alpha=-1"], ["partition.alpha", "-1.0", "> 0"]),
        (["partition=dirichlet_client", "partition.alpha=-1"], ["partition.alpha", "-1.0", "> 0"]),
        (["partition.alpha=nan"], ["partition.alpha", "nan", "finite"]),
        (["partition.alpha=inf"], ["partition.alpha", "inf", "finite"]),
        (["clients_per_round=30"], ["clients_per_round", "30", "num_clients=20", "clients_per_round <= num_clients"]),
        (["clients_per_round=6", "num_clients=5"], ["clients_per_round", "6", "num_clients=5"]),
        (["algorithm.lr=-0.1"], ["algorithm.lr", "-0.1", ">= 0"]),
        (["rounds=0"], ["rounds", "0", ">= 1"]),
        (["algorithm.momentum=1.0"], ["algorithm.momentum", "1.0", "[0, 1)"]),
        (["server_opt.momentum=-0.5"], ["server_opt.momentum", "-0.5", "[0, 1)"]),
        (["server_opt.lr=0"], ["server_opt.lr", "0.0", "> 0"]),
        (["server_opt=adam", "server_opt.tau=0"], ["server_opt.tau", "0.0", "> 0"]),
        (["server_opt=yogi", "server_opt.beta2=1"], ["server_opt.beta2", "1.0", "[0, 1)"]),
        (["algorithm=fedprox", "algorithm.mu=-1"], ["algorithm.mu", "-1.0", ">= 0"]),
        (["algorithm=feddyn", "algorithm.alpha=0"], ["algorithm.alpha", "0.0", "> 0"]),
        (["client_state_device=gpu"], ["client_state_device", "gpu", "auto, cpu, cuda"]),
        (["device=tpu"], ["device", "tpu", "auto, cpu, cuda"]),
        (["device=cuda:x"], ["device", "cuda:x", "cuda:N"]),
        (["engine.trace_after=-1"], ["engine.trace_after", "-1", ">= 0"]),
        (["device=cuda:99"], ["device", "cuda:99", "no such CUDA device", "auto, cpu"]),
        (["seed=-1"], ["seed", "-1", ">= 0"]),
        (["eval_every=0"], ["eval_every", "0", ">= 1"]),
        (["dataset.test_fraction=1.0"], ["dataset.test_fraction", "1.0", "(0, 1)"]),
        (["model=mlp", "model.hidden=[200,0]"], ["model.hidden", "[200, 0]", ">= 1"]),
        (["model.norm=batch"], ["model.norm", "batch", "none or group", "GroupNorm"]),
    ],
)
def test_out_of_range_values_are_one_line_errors(overrides, must_contain):
    msg = config_error(compose_cfg(*overrides))
    for part in must_contain:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert "allowed" in msg


def test_clients_per_round_equal_to_num_clients_is_fine():
    run = validate(compose_cfg("clients_per_round=5", "num_clients=5"))
    assert run.clients_per_round == run.num_clients == 5


# ---- unknown keys, wrong types, unknown options ------------------------------------------------------
def test_unknown_key_inside_group():
    cfg = default_dict()
    cfg["partition"]["foo"] = 1
    msg = config_error(cfg)
    assert msg.startswith("partition.foo=1")
    assert "unknown key" in msg
    for allowed in ("alpha", "min_size", "max_attempts", "balance"):
        assert allowed in msg


def test_unknown_top_level_key():
    cfg = default_dict()
    cfg["roundz"] = 5
    msg = config_error(cfg)
    assert msg.startswith("roundz=5")
    assert "unknown key" in msg and "allowed" in msg
    assert "rounds" in msg and "num_clients" in msg


def test_wrong_type_top_level():
    cfg = default_dict()
    cfg["rounds"] = "abc"
    msg = config_error(cfg)
    assert msg.startswith("rounds=")
    assert "abc" in msg and "wrong type" in msg and "Integer" in msg


def test_wrong_type_inside_group():
    cfg = default_dict()
    cfg["algorithm"]["lr"] = "fast"
    msg = config_error(cfg)
    assert msg.startswith("algorithm.lr=")
    assert "fast" in msg and "wrong type" in msg and "Float" in msg


def test_unknown_dataset_name_lists_allowed_names():
    cfg = default_dict()
    cfg["dataset"]["name"] = "nope"
    msg = config_error(cfg)
    assert "dataset.name" in msg and "nope" in msg
    for name in SCHEMAS["dataset"]:
        assert name in msg


def test_missing_group_lists_options():
    cfg = default_dict()
    del cfg["model"]
    msg = config_error(cfg)
    assert msg.startswith("model")
    for name in SCHEMAS["model"]:
        assert name in msg


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [("partition", "alpha", [1, 2]), ("partition", "foo", [1, 2]), (None, "foo", {"a": 1, "b": 2})],
)
def test_list_or_dict_value_still_gives_one_line_error(where, key, value):
    cfg = default_dict()
    (cfg[where] if where else cfg)[key] = value
    config_error(cfg)


# ---- alpha: accepted iff > 0 ---------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    partition=st.sampled_from(["dirichlet_class", "dirichlet_client"]),
    alpha=st.floats(min_value=-10, max_value=10, exclude_min=True, exclude_max=True, allow_nan=False),
)
def test_alpha_accepted_iff_positive(partition, alpha):
    cfg = default_dict()
    cfg["partition"] = {"name": partition, "alpha": alpha}
    if alpha > 0:
        run = validate(cfg)
        assert run.partition.alpha == alpha and math.isfinite(run.partition.alpha)
    else:
        msg = config_error(cfg)
        assert msg.startswith("partition.alpha=") and "allowed" in msg
