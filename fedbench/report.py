"""Figures and a markdown report of one or more sweeps: ``fedbench-report SWEEP_DIR... -o OUT``.

Finds the config keys that vary across the runs and writes into OUT, each figure as PNG and PDF:

- ``convergence``: the metric against rounds, mean and 95% t-band over seeds, one line per configuration;
- ``final_vs_<key>``: the final metric against each numeric varying key (log x past 2 decades);
- ``<metric>_vs_uplink``: the metric against cumulative uplink bytes (log x);
- ``heatmap``: final metric over the first two categorical varying keys, when there are two;
- ``summary.csv`` (:func:`fedbench.analysis.summarize`), ``summary.md`` (the same as a table, with
  rounds to ``--target``) and ``report.md``, which embeds them with the sweep's fixed config and the
  number of runs in every status (runs without metric rows included).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fedbench.analysis import (
    STATUSES,
    fixed_config,
    load_runs,
    lower_is_better,
    run_finals,
    summarize,
    varying_keys,
)
from fedbench.outputs import atomic_write_text
from fedbench.plot import (
    bytes_axis,
    line_style,
    metric_label,
    outside_legend,
    rounds_axis,
    safe_name,
    save_png_pdf,
    style,
)

MAX_ERROR_ROWS = 50  # runs listed with their error in report.md; the rest are counted


class ReportError(ValueError):
    """Bad input: reported as one line on stderr, exit status 2."""


# ---- formatting ----------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A value for a table or a label: floats to 4 significant digits, missing as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table; numbers right-aligned."""
    if df.empty:
        return "(none)\n"
    numeric = [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes]
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def is_numeric_axis(values: pd.Series) -> bool:
    """Whether a config key's values (missing ones ignored) are all numbers (not booleans)."""
    known = values.dropna()
    return len(known) > 0 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) for v in known
    )


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """Whether positive ``values`` span more than ``decades`` powers of ten (max/min > 10^decades),
    the point where a log axis reads better."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return len(v) > 1 and bool((v > 0).all()) and v.max() / v.min() > 10**decades


def t_band(mean: np.ndarray, std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half-width of the 95% t-interval of a mean per point: t_{0.975, n-1} * std / sqrt(n) (NaN for n < 2)."""
    from scipy import stats

    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, n - 1) * np.asarray(std, dtype=float) / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


# ---- figures -------------------------------------------------------------------------------------
def _groups(df: pd.DataFrame, keys: list[str]):
    """(label, rows) per configuration, in sorted key order; missing key values are a group too.
    The label holds the values only (``"0.1, krum"``): the legend's title names the keys."""
    if not keys:
        return [("all runs", df)]
    try:
        grouped = df.groupby(keys, dropna=False, sort=True)
    except TypeError:  # keys of mixed types cannot be sorted
        grouped = df.groupby(keys, dropna=False, sort=False)
    return [(", ".join(fmt(v) for v in (k if isinstance(k, tuple) else (k,))), g) for k, g in grouped]


def _legend_title(keys: Sequence[str]) -> str | None:
    return ", ".join(keys) or None


def _curve(rows: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean of ``x`` and of ``y`` over runs per round, with the 95% t half-width of ``y``."""
    ev = rows.loc[rows[y].notna(), list(dict.fromkeys(["round", x, y]))].astype("float64")
    if ev.empty:
        return pd.DataFrame(columns=["x", "mean", "half"])
    g = ev.groupby("round")
    stats = g[y].agg(["mean", "std", "count"])
    return pd.DataFrame(
        {"x": g[x].mean(), "mean": stats["mean"], "half": t_band(stats["mean"], stats["std"], stats["count"])}
    )


def plot_convergence(df: pd.DataFrame, keys: list[str], metric: str, stem: Path) -> list[Path]:
    """The metric against rounds: per configuration the mean over its runs and the 95% t-band."""
    with style():
        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.subplots()
        for i, (label, rows) in enumerate(_groups(df, keys)):
            c = _curve(rows, "round", metric)
            if c.empty:
                continue
            n = rows["run_dir"].nunique()
            (line,) = ax.plot(c["x"], c["mean"], label=f"{label} (n={n})", **line_style(i))
            ax.fill_between(
                c["x"], c["mean"] - c["half"], c["mean"] + c["half"], color=line.get_color(), alpha=0.2, lw=0
            )
        ax.set_xlabel("round")
        rounds_axis(ax)
        ax.set_ylabel(metric_label(metric))
        # short titles, left-aligned within the axes: a long one would run into the legend
        ax.set_title("mean over seeds and 95% t-band; n runs each", loc="left", fontsize="medium")
        outside_legend(fig, ax, _legend_title(keys))
        return save_png_pdf(fig, stem)


def plot_uplink(df: pd.DataFrame, keys: list[str], metric: str, stem: Path) -> list[Path]:
    """The metric against cumulative uplink bytes (log x), mean over runs per round."""
    with style():
        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.subplots()
        xs = []
        for i, (label, rows) in enumerate(_groups(df, keys)):
            c = _curve(rows, "uplink_bytes_cum", metric)
            c = c[c["x"] > 0]  # a log axis has no place for 0 bytes
            if not c.empty:
                ax.plot(c["x"], c["mean"], marker=".", label=label, **line_style(i))
                xs.extend(c["x"])
        bytes_axis(ax, xs)
        ax.set_xlabel("cumulative uplink (bytes, log scale)")
        ax.set_ylabel(metric_label(metric))
        ax.set_title("mean over seeds", loc="left", fontsize="medium")
        outside_legend(fig, ax, _legend_title(keys))
        return save_png_pdf(fig, stem)


def plot_final_vs(
    summary: pd.DataFrame, finals: pd.DataFrame, axis: str, keys: list[str], metric: str, last_k: int, stem: Path
) -> list[Path]:
    """Final metric against one numeric key: mean with 95% t error bars, one line per combination
    of the other varying keys, and each run's final value as a faint dot."""
    others = [k for k in keys if k != axis]
    with style():
        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.subplots()
        runs = dict(_groups(finals, others))
        for i, (label, rows) in enumerate(_groups(summary, others)):
            rows = rows.dropna(subset=[axis, "final_mean"]).sort_values(axis)
            if rows.empty:
                continue
            st = line_style(i)
            ax.errorbar(
                rows[axis].astype(float),
                rows["final_mean"],
                yerr=rows["final_ci95"].fillna(0),
                capsize=3,
                marker="o",
                label=label if others else "mean, 95% t-interval",
                **st,
            )
            dots = runs.get(label)
            if dots is not None:
                dots = dots.dropna(subset=[axis, "final"])
                ax.plot(dots[axis].astype(float), dots["final"], ".", color=st["color"], alpha=0.35)
        if spans_decades(summary[axis].dropna().astype(float).tolist()):
            ax.set_xscale("log")
        ax.set_xlabel(axis + (" (log scale)" if ax.get_xscale() == "log" else ""))
        last = "last evaluation" if last_k == 1 else f"mean of last {last_k} evaluations"
        ax.set_ylabel(f"final {metric_label(metric)}\n({last})")
        ax.set_title("mean and 95% t-interval over seeds; dots: single runs", loc="left", fontsize="medium")
        outside_legend(fig, ax, _legend_title(others))
        return save_png_pdf(fig, stem)


def plot_heatmap(
    summary: pd.DataFrame, rows_key: str, cols_key: str, metric: str, stem: Path, pooled_keys: Sequence[str] = ()
) -> list[Path]:
    """Final metric (mean over seeds, and over any other varying key) for each pair of values of
    two categorical keys; grey, marked "no value", where no run has a final value."""
    grid = summary.pivot_table(index=rows_key, columns=cols_key, values="final_mean", dropna=False)
    counts = summary.pivot_table(index=rows_key, columns=cols_key, values="n_seeds", aggfunc="sum", dropna=False)
    values = grid.to_numpy(dtype=float)
    with style():
        h, w = values.shape
        fig = Figure(figsize=(max(4.5, 1.1 * w + 3), max(3.5, 0.6 * h + 2)), layout="constrained")
        ax = fig.subplots()
        cmap = matplotlib.colormaps["viridis_r" if lower_is_better(metric) else "viridis"].with_extremes(bad="#dddddd")
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
        ax.set_xticks(range(w), [fmt(c) for c in grid.columns], rotation=30, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(h), [fmt(r) for r in grid.index])
        ax.set_xlabel(cols_key)
        ax.set_ylabel(rows_key)
        ax.grid(False)
        n = counts.to_numpy(dtype=float)
        for r in range(h):
            for c in range(w):
                v = values[r, c]
                if not np.isfinite(v):
                    ax.text(c, r, "no value", ha="center", va="center", fontsize="small")
                    continue
                red, green, blue, _ = cmap(im.norm(v))
                # black on light cells, white on dark ones (Rec. 601 luma)
                ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
                ax.text(c, r, f"{v:.3g}\n(n={int(n[r, c])})", ha="center", va="center", fontsize="small", color=ink)
        fig.colorbar(im, ax=ax, label=f"final {metric} (mean over runs)")
        pooled = [k for k in pooled_keys if k not in (rows_key, cols_key)]
        fig.suptitle(
            f"final {metric}: {rows_key} x {cols_key}" + (f"\n(pooled over {', '.join(pooled)})" if pooled else "")
        )
        return save_png_pdf(fig, stem)


# ---- the report ----------------------------------------------------------------------------------
def status_counts(df: pd.DataFrame) -> dict[str, int]:
    """Runs per status: every known status (0 included), then any other one present."""
    counts = df.drop_duplicates("run_dir")["status"].value_counts().to_dict()
    out = {s: int(counts.pop(s, 0)) for s in STATUSES}
    return out | {str(s): int(n) for s, n in sorted(counts.items(), key=lambda kv: str(kv[0]))}


def results_table(summary: pd.DataFrame, keys: list[str], target: float | None) -> pd.DataFrame:
    """The summarize output as a readable table: mean ± CI, counts, rounds to target."""
    table = summary[keys].copy() if keys else pd.DataFrame(index=summary.index)
    table["runs"] = summary["n_runs"]
    table["completed"] = summary["n_completed"]
    table["not completed"] = summary["n_runs"] - summary["n_completed"]
    table["seeds used"] = summary["n_seeds"]
    table["final mean"] = summary["final_mean"]
    table["± 95% CI"] = summary["final_ci95"]
    table["std"] = summary["final_std"]
    table["best mean"] = summary["best_mean"]
    if target is not None:
        table["reached target"] = [f"{r}/{n}" for r, n in zip(summary["n_reached_target"], summary["n_seeds"])]
        table["rounds to target (mean)"] = summary["rounds_to_target_mean"]
    return table


def _image(path: Path) -> str:
    return f"![{path.stem}]({path.name})\n\n[PDF]({path.with_suffix('.pdf').name})\n"


def write_report(
    paths: Sequence[str | Path],
    out: str | Path,
    metric: str = "test_acc",
    target: float | None = None,
    last_k: int = 1,
    statuses: Sequence[str] | None = ("completed",),
) -> Path:
    """Write the figures, ``summary.csv``, ``summary.md`` and ``report.md`` into ``out``; returns
    the path of ``report.md``. Raises :class:`ReportError` (or FileNotFoundError) on bad input."""
    out = Path(out)
    if last_k < 1:
        raise ReportError(f"--last-k must be >= 1, got {last_k}")
    if out.exists() and not out.is_dir():
        raise ReportError(f"output {out} exists and is not a folder")
    with warnings.catch_warnings(record=True):  # the runs without metrics are counted in report.md instead
        warnings.simplefilter("always")
        df = load_runs(*paths)
    if metric not in df.columns:
        have = ", ".join(c for c in df.attrs.get("metric_columns", []) if c != "round")
        raise ReportError(f"no metric column {metric!r} in these runs (have: {have})")
    out.mkdir(parents=True, exist_ok=True)

    keys = varying_keys(df)
    summary = summarize(df, by=keys, metric=metric, last_k=last_k, target=target, statuses=statuses)
    finals = run_finals(df, metric, last_k, target)
    used_dirs = set(finals["run_dir"] if statuses is None else finals.loc[finals["status"].isin(statuses), "run_dir"])
    used = df[df["run_dir"].isin(used_dirs)]
    used_finals = finals[finals["run_dir"].isin(used_dirs)]
    runs = df.drop_duplicates("run_dir")
    numeric = [k for k in keys if is_numeric_axis(runs[k])]
    categorical = [k for k in keys if k not in numeric]

    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    table_md = markdown_table(results_table(summary, keys, target))
    atomic_write_text(out / "summary.md", table_md)

    figures: list[tuple[str, Path]] = []  # (title, PNG path); each PNG has its PDF beside it
    if used[metric].notna().any():
        png, _ = plot_convergence(used, keys, metric, out / "convergence")
        figures.append(("Convergence", png))
        for axis in numeric:
            png, _ = plot_final_vs(
                summary, used_finals, axis, keys, metric, last_k, out / f"final_vs_{safe_name(axis)}"
            )
            figures.append((f"Final {metric} against {axis}", png))
        if "uplink_bytes_cum" in used.columns and (used["uplink_bytes_cum"].fillna(0) > 0).any():
            png, _ = plot_uplink(used, keys, metric, out / f"{safe_name(metric)}_vs_uplink")
            figures.append((f"{metric} against cumulative uplink bytes", png))
        if len(categorical) >= 2:
            # one cell per pair of values, pooling any other varying key
            pair = summarize(used, by=categorical[:2], metric=metric, last_k=last_k, statuses=statuses)
            png, _ = plot_heatmap(pair, *categorical[:2], metric, out / "heatmap", pooled_keys=keys)
            figures.append((f"Final {metric}: {categorical[0]} x {categorical[1]}", png))

    text = render_report(df, paths, keys, numeric, summary, table_md, figures, metric, target, last_k, statuses)
    atomic_write_text(out / "report.md", text)
    return out / "report.md"


def render_report(
    df: pd.DataFrame,
    paths: Sequence[str | Path],
    keys: list[str],
    numeric: list[str],
    summary: pd.DataFrame,
    table_md: str,
    figures: list[tuple[str, Path]],
    metric: str,
    target: float | None,
    last_k: int,
    statuses: Sequence[str] | None,
) -> str:
    """The text of report.md."""
    runs = df.drop_duplicates("run_dir")
    counts = status_counts(df)
    without = df.attrs.get("runs_without_metrics", {})
    included = "every run" if statuses is None else "runs with status " + ", ".join(f"`{s}`" for s in statuses)
    last = "its last evaluated round" if last_k == 1 else f"the mean over its last {last_k} evaluated rounds"
    lines = [
        "# fedbench report",
        "",
        "Runs from " + ", ".join(f"`{p}`" for p in paths) + ".",
        "",
        f"Metric `{metric}`; a run's final value is {last}. Means, standard deviations (ddof=1) and 95% "
        f"Student-t intervals (t_0.975,n-1 · std / √n) are over the {included} that have a final value.",
        "",
        "## Runs",
        "",
        markdown_table(pd.DataFrame({"status": [*counts, "total"], "runs": [*counts.values(), len(runs)]})),
    ]
    if without:
        by_status = ", ".join(f"{n} {s}" for s, n in without.items())
        n = sum(without.values())
        have = "run has" if n == 1 else "runs have"
        lines += [f"{n} {have} no metric rows ({by_status}): counted above, absent from the figures.", ""]
    lines += ["## Varying keys", ""]
    if keys:
        for k in keys:
            values = ", ".join(fmt(v) for v in _sorted_unique(runs[k]))
            lines.append(f"- `{k}` ({'numeric' if k in numeric else 'categorical'}): {values}")
    else:
        lines.append("No config key varies across these runs (apart from the seed).")
    seeds = _sorted_unique(runs["seed"]) if "seed" in runs.columns else []
    lines += ["", f"Seeds: {', '.join(fmt(s) for s in seeds) or '–'}.", "", "## Results", "", table_md]
    if target is None:
        lines += ["(Give `--target` to add the rounds each configuration needs to reach a value.)", ""]
    else:
        op = "<=" if lower_is_better(metric) else ">="
        lines += [f"Rounds to target: the first round with {metric} {op} {target}, mean over the runs reaching it.", ""]
    lines += ["Also as `summary.csv` (every column of `fedbench.analysis.summarize`) and `summary.md`.", ""]
    lines += ["## Figures", ""]
    if figures:
        for title, png in figures:
            lines += [f"### {title}", "", _image(png)]
    else:
        lines += [f"No run in the statistics has a value of `{metric}`: no figures.", ""]
    lines += ["## Runs that did not complete", ""]
    bad = runs[runs["status"] != "completed"]
    if bad.empty:
        lines += ["None.", ""]
    else:
        shown = bad.head(MAX_ERROR_ROWS)
        lines.append(markdown_table(shown[["run_dir", "status", "rounds_completed", "error"]].fillna("")))
        if len(bad) > MAX_ERROR_ROWS:
            lines += [f"... and {len(bad) - MAX_ERROR_ROWS} more.", ""]
    lines += ["## Fixed config", "", "Keys with the same value in every run.", ""]
    fixed = fixed_config(df)
    lines.append(markdown_table(pd.DataFrame({"key": list(fixed), "value": [fmt(v) for v in fixed.values()]})))
    return "\n".join(lines)


def _sorted_unique(values: pd.Series) -> list[Any]:
    known = values.dropna().unique().tolist()
    try:
        return sorted(known)
    except TypeError:
        return known


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fedbench-report", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=Path, help="sweep folders, run folders, or any folder above runs")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write the report into")
    p.add_argument("--metric", default="test_acc", help="metric column to report (default: test_acc)")
    p.add_argument("--target", type=float, help="report the rounds each configuration needs to reach this value")
    p.add_argument("--last-k", type=int, default=1, help="final value = mean over the last K evaluations (default: 1)")
    p.add_argument(
        "--include",
        nargs="+",
        default=["completed"],
        metavar="STATUS",
        help="statuses whose runs enter the statistics and figures (default: completed; 'all' for every run)",
    )
    args = p.parse_args(argv)
    statuses = None if "all" in args.include else args.include
    try:
        report = write_report(args.paths, args.output, args.metric, args.target, args.last_k, statuses)
    except (ReportError, OSError) as e:  # bad paths, no runs, an output folder that cannot be written
        print(f"fedbench-report: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
