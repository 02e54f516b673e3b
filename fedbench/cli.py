"""The ``fedbench`` command (also ``python -m fedbench``): a Hydra app.

Before Hydra starts any run, every run the command line asks for (all combinations of a
``-m`` sweep) is composed and validated, so a bad key or value exits with status 2 and one line
naming the key, the value and what is allowed, before any training.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fedbench.config import CONF_DIR  # noqa: F401  re-exported for scripts that locate the configs

_RESULTS: list[dict[str, Any]] = []
# Hydra flags after which no run starts (help, printing the config...): no preflight for those.
_RUN_FLAGS = {"-m", "--multirun"}


def _cause_chain(e: BaseException) -> list[BaseException]:
    chain = [e]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    return chain


def _describe(e: BaseException) -> str:
    """One line from a Hydra/OmegaConf composition error."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    for err in _cause_chain(e):
        if isinstance(err, MissingConfigException) and err.options is not None and err.missing_cfg_file:
            group, _, option = err.missing_cfg_file.rpartition("/")
            return f"{group}={option}: unknown {group} option; allowed: {', '.join(err.options)}"
        if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and getattr(err, "full_key", None):
            from fedbench.registry import moved_key

            new = moved_key(err.full_key)
            if new:
                return f"{err.full_key}: this key moved; set {new} instead"
            return f"{err.full_key}: unknown key (run `fedbench --cfg job` to list the keys)"
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            value = getattr(err, "value", None)
            return f"{err.full_key}={value!r}: {str(err.msg).splitlines()[0]}"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return "; ".join(lines[:4]).replace("\t", "") or type(e).__name__


def preflight(overrides: list[str], multirun: bool) -> list[str]:
    """Compose and validate every run the overrides describe; returns error lines (empty if ok)."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from fedbench.config import ConfigError, hydra_context, validate

    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(user)
    except Exception as e:  # noqa: BLE001  Hydra's parse errors are user input errors
        return [_describe(e)]
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch] if multirun else [user]
    errors: list[str] = []
    with hydra_context():
        for job in jobs:
            try:
                validate(compose(config_name="config", overrides=job))
            except ConfigError as e:
                msg = str(e)
            except Exception as e:  # noqa: BLE001
                msg = _describe(e)
            else:
                continue
            if msg not in errors:
                errors.append(msg)
    return errors


@hydra.main(config_path="conf", config_name="config", version_base=None)
def _app(cfg: DictConfig) -> None:
    from fedbench.runner import run_experiment

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = run_experiment(cfg, run_dir)
    _RESULTS.append(summary)
    final = summary.get("final", {})
    acc = f" test_acc={final['test_acc']:.4f}" if "test_acc" in final else ""
    if summary.get("engine_note"):
        print(f"fedbench: engine=auto chose {summary['engine']}: {summary['engine_note']}", flush=True)
    line = f"fedbench: {summary['status']} after {summary['rounds_completed']} rounds{acc} -> {run_dir}"
    if summary["error"]:
        line += f"\nfedbench: {summary['error']}"
    print(line, file=sys.stderr if summary["status"] == "failed" else sys.stdout, flush=True)


def main() -> None:
    argv = sys.argv[1:]
    flags = {a for a in argv if a.startswith("-")}
    if flags <= _RUN_FLAGS:
        errors = preflight([a for a in argv if not a.startswith("-")], multirun=bool(flags))
        if errors:
            for err in errors:
                print(f"fedbench: config error: {err}", file=sys.stderr)
            sys.exit(2)
    try:
        _app()
    except KeyboardInterrupt:
        print("fedbench: interrupted; the run's summary.json says so", file=sys.stderr)
        sys.exit(130)
    failed = [s for s in _RESULTS if s["status"] == "failed"]
    if len(_RESULTS) > 1:
        counts = {st: sum(s["status"] == st for s in _RESULTS) for st in ("completed", "diverged", "failed")}
        print("fedbench: sweep finished: " + ", ".join(f"{n} {st}" for st, n in counts.items()))
    if failed:
        sys.exit(1)
