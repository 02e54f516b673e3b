"""Results API: every run below some folders as one tidy frame, and statistics per configuration.

    from fedbench.analysis import load_runs, summarize, varying_keys

    df = load_runs("results/sweeps/alpha")  # one row per (run, round); config as dotted columns
    varying_keys(df)                        # e.g. ["partition.alpha"]
    summarize(df, target=0.9)               # one row per configuration: mean, std, 95% CI over seeds

A *run directory* is any folder holding ``summary.json`` (written first thing by
:func:`fedbench.runner.run_experiment`); ``config.yaml`` and the metric rows are read when present.
Folders whose name starts with ``.`` below the folders given (``.hydra/``, ``.previous/``) are
skipped. Metrics are read with :func:`fedbench.outputs.load_metrics`, statuses with
:func:`fedbench.outputs.run_status` (a ``running`` run whose process is gone is ``stale``).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fedbench.outputs import METRIC_COLUMNS, UNHASHED_KEYS, WALL_CLOCK_COLUMNS, load_metrics, run_status

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
# Every status a run can end (or be seen) in; summarize counts each, and any unknown one as well.
STATUSES = ("completed", "diverged", "failed", "interrupted", "stale", "running")
RUN_COLUMNS = ["run_dir", "status", "error", "config_hash", "resumed_from", "rounds_completed"]
PARTITION_STATS_PREFIX = "partition_stats."
# Config keys that never change results, so two runs differing only there are the same
# configuration: those the config hash leaves out (the whole logger group among them), and where
# and with how many threads the run computed.
NEUTRAL_KEYS = frozenset(UNHASHED_KEYS) | {"device", "threads"}
NEUTRAL_PREFIXES = tuple(f"{k}." for k in UNHASHED_KEYS)

# PyYAML follows YAML 1.1, where "1e-3" (no dot) is a string; YAML 1.2 (and OmegaConf, which
# wrote these files) reads it as a float. Same resolver as OmegaConf's loader.
_Loader = type("_Loader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# ---- finding and reading runs --------------------------------------------------------------------
def _natural_key(path: Path) -> list[Any]:
    """Sort key that puts sweep job ``2_...`` before ``10_...``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_run_dirs(root: str | Path, markers: Iterable[str] = (SUMMARY_FILE,)) -> list[Path]:
    """The run directories (folders holding one of ``markers``: ``summary.json``) at or below
    ``root``, in natural order; folders whose name starts with ``.`` below ``root`` are not searched."""
    markers = frozenset(markers)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # pruning in place stops os.walk from descending into .hydra/, .previous/, ...
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if not markers.isdisjoint(filenames):
            found.append(Path(dirpath))
    return sorted(found, key=_natural_key)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """``summary.json`` as a dict; an unreadable one gives status ``unknown`` and says why in ``error``."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return {"status": "unknown", "error": f"unreadable {SUMMARY_FILE}: {e}"}
    if not isinstance(summary, dict):
        return {"status": "unknown", "error": f"unreadable {SUMMARY_FILE}: not a JSON object"}
    return summary


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.yaml`` as a nested dict; ``{}`` when it is missing or unreadable (a run that failed
    before writing it still has its status and error)."""
    try:
        cfg = yaml.load((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def flatten_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"partition.alpha": 0.5, ...}``; lists (and empty mappings) become their
    ``str()`` so every value is hashable and fits one column."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, (list, tuple, Mapping)):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat


def _run_fields(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The bookkeeping columns of one run, and its partition's heterogeneity statistics."""
    fields = {
        "run_dir": str(run_dir),
        "status": run_status(summary),
        "error": summary.get("error"),
        "config_hash": summary.get("config_hash"),
        "resumed_from": summary.get("resumed_from"),
        "rounds_completed": summary.get("rounds_completed"),
    }
    partition = summary.get("partition")
    if isinstance(partition, dict):
        fields |= {PARTITION_STATS_PREFIX + k: v for k, v in partition.items() if not isinstance(v, (list, dict))}
    return fields


def _collect_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory under ``paths``, each once, in the order given."""
    seen: set[Path] = set()
    dirs = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no such folder: {path}")
        for d in find_run_dirs(path):
            key = d.resolve()
            if key not in seen:
                seen.add(key)
                dirs.append(d)
    return dirs


def _integer_to_nullable(df: pd.DataFrame) -> pd.DataFrame:
    """int64 columns -> pandas' nullable Int64, so rows of runs without metrics (NA) keep
    ``round`` and the byte counts integers instead of turning them into floats."""
    ints = {c: "Int64" for c, t in df.dtypes.items() if pd.api.types.is_integer_dtype(t)}
    return df.astype(ints) if ints else df


def _rounds_column(values: pd.Series) -> pd.Series:
    """Round numbers as nullable Int64 (integers, or NA for null); left as they are when some
    value is not a whole number, so an unexpected summary.json never stops the read."""
    try:
        return values.astype("Int64")
    except (TypeError, ValueError):
        return values


def load_runs(*paths: str | Path, metrics: bool = True) -> pd.DataFrame:
    """Every run under ``paths`` (run folders, sweep folders, any root) as one tidy frame.

    Columns, in order: the metric columns (``fedbench.outputs.METRIC_COLUMNS``, then any extra
    ones), ``run_dir``, ``status`` (``run_status``: ``stale`` for a dead ``running`` run),
    ``error``, ``config_hash``, ``resumed_from``, ``rounds_completed`` (from summary.json; NA
    while a run has not ended), ``partition_stats.<key>`` (the partition's heterogeneity
    statistics from summary.json), then the resolved config flattened to dotted columns (``seed``,
    ``partition.alpha``, ``algorithm.lr``; lists as strings; ``seed`` falls back to summary.json's
    when config.yaml is missing).

    One row per (run, round), sorted by run then round. A run without metric rows (failed before
    its first round) is one row with NA metrics; ``round`` and the other integer metric columns
    are nullable ``Int64`` so they stay integers. How many such runs there were, by status, is in
    ``df.attrs["runs_without_metrics"]`` and in a warning. ``metrics=False`` gives one row per run
    without the metric columns (no metric files are read).

    ``df.attrs`` also holds ``config_columns`` and ``metric_columns`` (used by :func:`varying_keys`).
    Raises FileNotFoundError naming the path for a path that is not a folder, or when no run
    (folder holding summary.json) is found.
    """
    if len(paths) == 1 and isinstance(paths[0], (list, tuple)):  # load_runs([a, b]) means load_runs(a, b)
        paths = tuple(paths[0])
    if not paths:
        raise TypeError("load_runs needs at least one path")
    run_dirs = _collect_run_dirs(paths)
    if not run_dirs:
        raise FileNotFoundError(f"no runs (folders holding {SUMMARY_FILE}) under {', '.join(map(str, paths))}")
    fields, configs = [], []
    for d in run_dirs:
        summary = read_summary(d)
        fields.append(_run_fields(d, summary))
        cfg = flatten_config(read_config(d))
        if "seed" not in cfg and summary.get("seed") is not None:
            cfg["seed"] = summary["seed"]
        configs.append(cfg)
    # one DataFrame per kind of column for all runs: no per-run frame, no per-row assign
    run_df = pd.DataFrame(fields)
    for col in ("rounds_completed", "resumed_from"):
        run_df[col] = _rounds_column(run_df[col])
    config_df = pd.DataFrame(configs, index=run_df.index)
    config_df = config_df.rename(columns={c: f"config.{c}" for c in config_df.columns if c in run_df.columns})
    runs = pd.concat([run_df, config_df], axis=1)
    runs.attrs = {"config_columns": list(config_df.columns), "metric_columns": [], "runs_without_metrics": {}}
    if not metrics:
        return runs

    frames = [load_metrics(d) for d in run_dirs]
    counts = np.array([len(f) for f in frames])
    empty = np.flatnonzero(counts == 0)
    rows = [f for f in frames if len(f)]
    metric_df = _integer_to_nullable(pd.concat(rows, ignore_index=True) if rows else frames[0])
    # one all-NA row per run without metrics, with the same dtypes (reindex past the end fills NA)
    placeholders = metric_df.iloc[:0].reindex(range(len(empty)))
    metric_df = pd.concat([metric_df, placeholders], ignore_index=True) if len(empty) else metric_df
    run_index = np.concatenate([np.repeat(np.arange(len(run_dirs)), counts), empty])
    order = np.argsort(run_index, kind="stable")  # runs in discovery order, each run's rows in round order
    metric_df = metric_df.take(order).reset_index(drop=True)
    # a config key named like a metric column (unlikely) keeps its value under "config.<key>"
    clash = {c: f"config.{c}" for c in runs.columns if c in metric_df.columns}
    out = pd.concat([metric_df, runs.rename(columns=clash).take(run_index[order]).reset_index(drop=True)], axis=1)

    without = dict(sorted(Counter(runs["status"].iloc[empty]).items()))
    out.attrs = {
        "config_columns": [clash.get(c, c) for c in runs.attrs["config_columns"]],
        "metric_columns": list(metric_df.columns),
        "runs_without_metrics": without,
    }
    if without:
        by_status = ", ".join(f"{n} {s}" for s, n in without.items())
        warnings.warn(
            f"load_runs: {len(empty)} of {len(run_dirs)} runs have no metric rows ({by_status}); "
            "each is one row with NA metrics",
            stacklevel=2,
        )
    return out


# ---- configuration keys --------------------------------------------------------------------------
def _per_run(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop_duplicates("run_dir") if "run_dir" in df.columns else df


def config_columns(df: pd.DataFrame) -> list[str]:
    """The config columns of a :func:`load_runs` frame: from ``df.attrs`` when it survived, else
    every column that is neither a metric, bookkeeping nor a partition statistic."""
    cols = df.attrs.get("config_columns")
    if cols is not None:
        return [c for c in cols if c in df.columns]
    other = set(METRIC_COLUMNS) | set(RUN_COLUMNS) | set(df.attrs.get("metric_columns", ()))
    return [c for c in df.columns if c not in other and not c.startswith(PARTITION_STATS_PREFIX)]


def is_neutral_key(key: str) -> bool:
    """Whether a config key never changes results (progress bar, logger, device, threads...)."""
    return key in NEUTRAL_KEYS or key.startswith(NEUTRAL_PREFIXES)


def _distinct_counts(df: pd.DataFrame, cols: list[str]) -> dict[str, int]:
    """Number of distinct values of each column across runs. A missing value (NaN/None) counts as
    a value only in runs that trained a round: their config.yaml is the full resolved config, so a
    missing key means the key does not apply (an iid partition has no ``alpha``), while a run that
    failed before its first round may have only the keys the user set."""
    runs = _per_run(df)
    if "round" in df.columns and "run_dir" in df.columns:
        ran = runs["run_dir"].map(df["round"].notna().groupby(df["run_dir"]).any())
    elif "rounds_completed" in runs.columns:
        ran = runs["rounds_completed"].fillna(0) > 0
    else:
        ran = pd.Series(True, index=runs.index)
    return {c: runs.loc[ran | runs[c].notna(), c].nunique(dropna=False) for c in cols}


def varying_keys(df: pd.DataFrame) -> list[str]:
    """Config columns whose value differs across runs (see :func:`_distinct_counts` for missing
    values), in column order; leaves out ``seed`` (the replicate axis), bookkeeping, wall-clock
    columns and the keys that never change results (:data:`NEUTRAL_KEYS`, ``logger.*``)."""
    cols = [c for c in config_columns(df) if c != "seed" and c not in WALL_CLOCK_COLUMNS and not is_neutral_key(c)]
    distinct = _distinct_counts(df, cols)
    return [c for c in cols if distinct[c] > 1]


def fixed_config(df: pd.DataFrame) -> dict[str, Any]:
    """The config keys with one value across runs (the sweep's fixed settings), and that value."""
    runs = _per_run(df)
    cols = config_columns(df)
    distinct = _distinct_counts(df, cols)
    fixed = {}
    for c in cols:
        if distinct[c] <= 1:
            known = runs[c].dropna()
            fixed[c] = known.iloc[0] if len(known) else None
    return fixed


# ---- statistics ----------------------------------------------------------------------------------
def lower_is_better(metric: str) -> bool:
    """Loss-like metrics (name contains ``loss``) improve downwards; everything else upwards."""
    return "loss" in metric


def run_finals(
    df: pd.DataFrame, metric: str = "test_acc", last_k: int = 1, target: float | None = None
) -> pd.DataFrame:
    """One row per run: ``run_dir``, ``status``, the config columns, and

    - ``final``: mean of ``metric`` over the run's last ``last_k`` evaluated rounds (rounds where
      ``metric`` is not NaN; fewer when the run has fewer), NaN without any;
    - ``best``: max of ``metric`` over evaluated rounds (min for a loss-like metric);
    - ``rounds_to_target``: the first round with ``metric >= target`` (``<=`` for a loss-like
      metric), NaN when never reached or no ``target``.
    """
    if last_k < 1:
        raise ValueError(f"last_k must be >= 1, got {last_k}")
    if metric not in df.columns:
        raise KeyError(f"no metric column {metric!r}")
    keep = ["run_dir", "status", *[c for c in config_columns(df) if c not in ("run_dir", "status")]]
    runs = _per_run(df)[keep].set_index("run_dir")
    ev = df.loc[df[metric].notna(), ["run_dir", "round", metric]].sort_values(["run_dir", "round"], kind="stable")
    values = ev[metric].astype("float64")
    low = lower_is_better(metric)
    last = ev.groupby("run_dir", sort=False).tail(last_k)
    runs["final"] = last.groupby("run_dir", sort=False)[metric].mean().astype("float64")
    runs["best"] = values.groupby(ev["run_dir"], sort=False).agg("min" if low else "max")
    runs["rounds_to_target"] = np.nan
    if target is not None:
        reached = ev[(values <= target) if low else (values >= target)]
        runs["rounds_to_target"] = reached.groupby("run_dir", sort=False)["round"].min().astype("float64")
    return runs.reset_index()


def ci95_halfwidth(std: float, n: int) -> float:
    """Half-width of the 95% Student-t confidence interval of a mean of ``n`` values with sample
    standard deviation ``std``: ``t_{0.975, n-1} * std / sqrt(n)``; NaN for ``n < 2`` or a
    non-finite ``std``."""
    from scipy import stats

    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def summarize(
    df: pd.DataFrame,
    by: str | list[str] | None = None,
    metric: str = "test_acc",
    last_k: int = 1,
    target: float | None = None,
    statuses: Iterable[str] | None = ("completed",),
) -> pd.DataFrame:
    """One row per configuration (the values of ``by``; default :func:`varying_keys`), over its
    runs (the seeds). Per run (:func:`run_finals`): ``final`` = mean of ``metric`` over its last
    ``last_k`` evaluated rounds, ``best`` = max (min when the metric's name contains ``loss``),
    ``rounds_to_target`` = first round with metric >= ``target`` (<= for a loss).

    Per group, every run is counted: ``n_runs``, ``n_<status>`` for each of :data:`STATUSES` (and
    any other status present). The statistics use the runs whose status is in ``statuses``
    (default: completed; ``None``: every run) and that have a final value; with n such runs and
    x_i their finals:

    - ``n_seeds`` = n;
    - ``final_mean`` = sum(x_i) / n;
    - ``final_std`` = sqrt(sum((x_i - mean)^2) / (n - 1)) (NaN for n < 2);
    - ``final_ci95`` = t_{0.975, n-1} * final_std / sqrt(n), the half-width of the 95% Student-t
      interval of the mean (NaN for n < 2);
    - ``best_mean`` = mean of the runs' ``best``;
    - with ``target``: ``n_reached_target`` (runs that reached it) and ``rounds_to_target_mean``
      (mean first round over those runs; NaN when none did).

    Group keys that are NaN (a key some runs lack) form their own group; ``by=[]`` pools all runs.
    """
    by = varying_keys(df) if by is None else [by] if isinstance(by, str) else list(by)
    runs = run_finals(df, metric, last_k, target)
    if not by:
        runs["_all"] = "all"
    keys = by or ["_all"]
    extra = sorted(set(runs["status"].dropna()) - set(STATUSES))
    for s in (*STATUSES, *extra):
        runs[f"n_{s}"] = (runs["status"] == s).astype("int64")
    used = runs["status"].isin(list(statuses)) if statuses is not None else pd.Series(True, index=runs.index)
    for col in ("final", "best", "rounds_to_target"):
        runs[f"_{col}"] = runs[col].where(used & runs["final"].notna())

    agg = {"n_runs": ("run_dir", "size"), **{f"n_{s}": (f"n_{s}", "sum") for s in (*STATUSES, *extra)}}
    agg |= {
        "n_seeds": ("_final", "count"),
        "final_mean": ("_final", "mean"),
        "final_std": ("_final", "std"),  # pandas' std is the sample std (ddof=1)
        "best_mean": ("_best", "mean"),
    }
    if target is not None:
        agg |= {
            "n_reached_target": ("_rounds_to_target", "count"),
            "rounds_to_target_mean": ("_rounds_to_target", "mean"),
        }
    # NaN keys kept: a key missing in some runs is a group, not a drop; pandas sorts mixed-type
    # keys (numbers, then strings, then NaN)
    out = runs.groupby(keys, dropna=False, sort=True).agg(**agg).reset_index()
    ci = [ci95_halfwidth(s, n) for s, n in zip(out["final_std"], out["n_seeds"])]
    out.insert(out.columns.get_loc("final_std") + 1, "final_ci95", ci)
    if not by:
        out = out.drop(columns="_all")
    out.attrs = {"metric": metric, "by": by, "last_k": last_k, "target": target}
    return out
