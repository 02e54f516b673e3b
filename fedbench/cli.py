"""The ``fedbench`` command (also ``python -m fedbench``): a Hydra app.

Before Hydra starts any run, every run the command line asks for (all combinations of a
``-m`` sweep) is composed and validated, so a bad key or value exits with status 2 and one line
naming the key, the value and what is allowed, before any training.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fedbench.config import CONF_DIR  # noqa: F401  re-exported for scripts that locate the configs

_RESULTS: list[dict[str, Any]] = []
_SWEEP_DIR: Path | None = None


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


def preflight(overrides: list[str], multirun: bool, config_name: str = "config") -> list[str]:
    """Compose and validate every run the overrides describe; returns error lines (empty if ok)."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from fedbench.config import ConfigError, hydra_context, validate

    # Hydra's own keys (hydra.*, hydra/launcher=...) are Hydra's to check, except the search path
    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra") or o.startswith("hydra.searchpath=")]
    try:
        parsed = OverridesParser.create().parse_overrides(user)
    except Exception as e:  # noqa: BLE001  Hydra's parse errors are user input errors
        return [_describe(e)]
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch] if multirun else [user]
    errors: list[str] = []
    with hydra_context():
        for job in jobs:
            try:
                validate(compose(config_name=config_name, overrides=job))
            except ConfigError as e:
                msg = str(e)
            except Exception as e:  # noqa: BLE001
                msg = _describe(e)
            else:
                continue
            if msg not in errors:
                errors.append(msg)
    return errors


def _parse_args(argv: list[str]) -> Any:
    """Hydra's own command-line parser; None when it rejects the line (Hydra then says why)."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return get_args_parser().parse_args(argv)
    except SystemExit:
        return None


def _static_prefix(template: str) -> Path:
    """The folder part of an output-dir template that is known before the run: everything
    before its first interpolation (``results/sweeps/${now:...}`` -> ``results/sweeps``)."""
    head = template.split("${", 1)[0]
    if "${" in template and not head.endswith("/"):
        head = str(Path(head).parent) if head else "."
    return Path(head or ".")


def _writable(path: Path) -> str | None:
    """None if a folder can be created at ``path`` and written, else why not (tried for real:
    a temp file in the nearest existing ancestor, so root, read-only mounts and full disks
    answer truthfully)."""
    import tempfile

    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a folder"
    try:
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".fedbench-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return f"cannot write in {p} ({e.strerror or e})"
    return None


def output_dir_errors(overrides: list[str], multirun: bool, config_name: str = "config") -> list[str]:
    """The output folder (``hydra.sweep.dir`` in a sweep, else ``hydra.run.dir``) must be
    creatable and writable: checked before any run starts."""
    from hydra import compose

    from fedbench.config import hydra_context

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    template = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith(key + "=")), None)
    if template is None:
        with hydra_context():
            cfg = compose(config_name=config_name, overrides=[], return_hydra_config=True)
        node = cfg.hydra.sweep if multirun else cfg.hydra.run
        template = str(node._get_node("dir")._value())
    problem = _writable(_static_prefix(template))
    return [f"{key}={template}: {problem}"] if problem else []


def _job_info(run_dir: Path, multirun: bool) -> dict[str, Any]:
    """What the run needs to know about its Hydra job: the launcher (threads rule), the sweep
    folder, and this job's swept ``key=value`` pairs (read from the sweep's ``multirun.yaml``, so
    it works inside launcher worker processes too)."""
    from omegaconf import OmegaConf

    from fedbench.threads import current_launcher

    hc = HydraConfig.get()
    job: dict[str, Any] = {"launcher": current_launcher(), "sweep_dir": None}
    if not multirun:
        return job
    sweep_dir = run_dir.parent
    job["sweep_dir"] = str(sweep_dir)
    swept: set[str] = set()
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        sweep_overrides = list(OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task)
        swept = {
            o.key_or_group for o in OverridesParser.create().parse_overrides(sweep_overrides) if o.is_sweep_override()
        }
    except Exception:  # noqa: BLE001  tags are a convenience; a sweep without multirun.yaml has none
        pass
    job["varying"] = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept]
    return job


def _same_run_elsewhere(cfg: DictConfig, run_dir: Path) -> Path:
    """In a sweep, a run of this config may already live in another job folder (the relaunched
    sweep's job numbers moved): use that folder, and drop the empty one Hydra just made."""
    import shutil

    from omegaconf import OmegaConf

    from fedbench.outputs import config_hash
    from fedbench.rundir import find_same_run, only_hydra_files, read_summary

    if read_summary(run_dir) is not None or cfg.get("rerun", False):
        return run_dir
    other = find_same_run(run_dir.parent, config_hash(OmegaConf.to_container(cfg, resolve=True)), exclude=run_dir)
    if other is None:
        return run_dir
    if only_hydra_files(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
    return other


class SweepCallback(Callback):
    """Hydra callback, run in the ``fedbench`` process itself whatever the launcher:

    - notes the sweep folder, so the closing line and the exit status can be read from the
      runs' ``summary.json`` when the runs happened in other processes (joblib, submitit);
    - clears a ``.stop`` left by an interrupted launch, so a relaunch runs;
    - with a launcher that runs jobs in other processes, turns SIGTERM into ``.stop`` (every run
      stops after its round and checkpoints; queued runs do not start) and ignores SIGINT here:
      Ctrl-C reaches the workers from the terminal, and stop the same way.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import signal

        from omegaconf import OmegaConf

        from fedbench.rundir import STOP_FILE
        from fedbench.threads import BASIC, launcher_kind

        global _SWEEP_DIR
        _SWEEP_DIR = Path(str(config.hydra.sweep.dir))
        _SWEEP_DIR.mkdir(parents=True, exist_ok=True)
        stop = _SWEEP_DIR / STOP_FILE
        stop.unlink(missing_ok=True)
        if launcher_kind(OmegaConf.to_container(config.hydra.launcher, resolve=False)) == BASIC:
            return

        def request_stop(signum: int, frame: Any) -> None:
            stop.write_text(signal.Signals(signum).name)
            print("fedbench: SIGTERM received: every run of the sweep stops after its round", file=sys.stderr)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, request_stop)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def _app(cfg: DictConfig) -> None:
    import signal

    from hydra.types import RunMode

    from fedbench.rundir import STOP_FILE
    from fedbench.runner import run_experiment
    from fedbench.threads import BASIC, launcher_kind

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    job = _job_info(run_dir, multirun)
    if multirun and (run_dir.parent / STOP_FILE).exists():
        print(f"fedbench: not started (the sweep was asked to stop): {run_dir}", file=sys.stderr, flush=True)
        return
    if multirun:
        run_dir = _same_run_elsewhere(cfg, run_dir)
    summary = run_experiment(cfg, run_dir, job=job)
    _RESULTS.append(summary)
    if summary.get("skipped"):
        print(
            f"fedbench: skipped: this config already ended {summary['status']} in {run_dir} (rerun=true runs it again)",
            flush=True,
        )
        return
    final = summary.get("final", {})
    acc = f" test_acc={final['test_acc']:.4f}" if "test_acc" in final else ""
    resumed = f" (resumed from round {summary['resumed_from']})" if summary.get("resumed_from") is not None else ""
    line = f"fedbench: {summary['status']} after {summary['rounds_completed']} rounds{acc}{resumed} -> {run_dir}"
    if summary["error"]:
        line += f"\nfedbench: {summary['error']}"
    print(line, file=sys.stdout if summary["status"] == "completed" else sys.stderr, flush=True)
    if summary["status"] == "interrupted" and launcher_kind(job["launcher"]) == BASIC:
        # stop the sweep here: the basic launcher would start the next run. Other launchers run
        # this in a worker: the .stop file stops the sweep, and the parent sets the exit status.
        raise SystemExit(128 + int(signal.Signals[summary.get("signal", "SIGINT")]))


def _sweep_statuses(sweep_dir: Path) -> list[dict[str, Any]]:
    """The summaries of the runs directly under a sweep folder (the launcher ran them elsewhere)."""
    from fedbench.outputs import run_status
    from fedbench.rundir import read_summary

    out = []
    for path in sorted(sweep_dir.glob("*/summary.json")):
        s = read_summary(path.parent)
        if s is not None:
            out.append({**s, "status": run_status(s)})
    return out


_NO_RUN_FLAGS = ("help", "hydra_help", "info", "shell_completion", "version")


def main() -> None:
    argv = sys.argv[1:]
    args = _parse_args(argv)
    if args is not None and not any(getattr(args, f, None) for f in _NO_RUN_FLAGS):
        config_name = args.config_name or "config"
        overrides = list(args.overrides)
        if args.config_dir:
            overrides.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
        errors = preflight(overrides, multirun=bool(args.multirun), config_name=config_name)
        if not errors and not args.cfg:
            errors = output_dir_errors(list(args.overrides), bool(args.multirun), config_name)
        if errors:
            for err in errors:
                print(f"fedbench: config error: {err}", file=sys.stderr)
            sys.exit(2)
    try:
        _app()
    except KeyboardInterrupt:
        print("fedbench: interrupted at once; the run's summary.json says so", file=sys.stderr)
        sys.exit(130)
    results, where = _RESULTS, ""
    if not results and _SWEEP_DIR is not None:  # the launcher ran the jobs in other processes
        results, where = _sweep_statuses(_SWEEP_DIR), f" (run folders in {_SWEEP_DIR})"
    if len(results) > 1 or where:
        statuses = ("completed", "diverged", "failed", "interrupted")
        counts = {st: sum(s["status"] == st and not s.get("skipped") for s in results) for st in statuses}
        counts["skipped (already done)"] = sum(bool(s.get("skipped")) for s in results)
        others = len(results) - sum(counts.values())
        if others:
            counts["other"] = others
        print("fedbench: sweep finished: " + ", ".join(f"{n} {st}" for st, n in counts.items() if n) + where)
    interrupted = [s for s in results if s["status"] == "interrupted" and not s.get("skipped")]
    if interrupted:
        import signal

        sys.exit(128 + int(signal.Signals[interrupted[0].get("signal") or "SIGINT"]))
    if any(s["status"] == "failed" for s in results):
        sys.exit(1)
