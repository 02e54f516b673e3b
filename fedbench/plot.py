"""Accuracy and loss curves of runs: ``fedbench-plot PATH... -o fig.png``.

Each PATH is a run directory or any folder above runs (a sweep): every run below it is plotted.
Runs without metric rows and folders without runs are skipped and named in one line on stderr;
the command fails (exit 2) only when nothing at all can be plotted.

Also home of the figure style shared with ``fedbench-report``: a colour-blind-safe palette
(Okabe-Ito), constrained layout, and atomic PNG/PDF writes.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from cycler import cycler

# Figure, not pyplot: no backend is chosen or switched (a notebook's inline backend stays), no
# global figure list to leak into, and it works without a display.
from matplotlib.figure import Figure

from fedbench.analysis import SUMMARY_FILE, find_run_dirs
from fedbench.outputs import METRICS_LOG, atomic_write_bytes, load_metrics

# Okabe & Ito (2008), distinguishable with every common colour-vision deficiency; yellow last,
# since it is faint on white.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]
RC = {
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": "small",
    "legend.frameon": False,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays editable and searchable
    "ps.fonttype": 42,
}
RUN_MARKERS = (SUMMARY_FILE, "metrics.parquet", METRICS_LOG)
METRIC_LABELS = {
    "test_acc": "test accuracy (fraction)",
    "test_loss": "test loss (cross-entropy)",
    "train_loss": "train loss (mean over the round's clients)",
    "client_acc_mean": "mean client accuracy (fraction)",
    "client_acc_min": "worst client accuracy (fraction)",
    "client_acc_p10": "10th-percentile client accuracy (fraction)",
    "client_acc_std": "client accuracy std (fraction)",
}


@contextmanager
def style() -> Iterator[None]:
    """The figure defaults of fedbench-plot and fedbench-report."""
    with matplotlib.rc_context(RC):
        yield


def line_style(i: int) -> dict[str, str]:
    """Colour and dash of the i-th line: 8 colours, then the same colours dashed, and so on, so
    up to 32 lines stay distinguishable."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "linestyle": LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)]}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def outside_legend(fig, ax, title: str | None = None, max_rows: int = 24) -> None:
    """One legend to the right of the axes (constrained layout makes room for it), in columns of
    at most ``max_rows`` entries."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncols = math.ceil(len(handles) / max_rows)
        fig.legend(handles, labels, loc="outside right upper", ncols=ncols, title=title, alignment="left")


def bytes_axis(ax, values) -> None:
    """A log x axis of byte counts labelled 1 kB, 2 kB, 5 kB, ...; the 2 and 5 steps only when the
    data spans less than two decades (else they would crowd the labels)."""
    from matplotlib import ticker

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.EngFormatter(unit="B"))
    if len(v) and v.max() / v.min() < 100:
        ax.xaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(ticker.EngFormatter(unit="B"))
    else:
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def rounds_axis(ax) -> None:
    """Whole-number ticks on an x axis of rounds."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically: a reader never sees half a file."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_png_pdf(fig, stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` (a stem may contain dots, as in ``partition.alpha``)."""
    stem = Path(stem)
    return [save_figure(fig, stem.parent / f"{stem.name}.{fmt}") for fmt in ("png", "pdf")]


def safe_name(text: str) -> str:
    """A file-name-safe version of a config key or metric name."""
    return re.sub(r"[^\w.-]+", "_", text)


def _label(run_dir: Path) -> str:
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        lines = [ln[2:].strip() for ln in overrides.read_text().splitlines() if ln.startswith("- ")]
        if lines:
            return " ".join(lines)
    return run_dir.name


def _draw(curves: list[tuple[str, pd.DataFrame]], out: Path) -> Path:
    """Test accuracy, test loss and train loss against rounds, one line per (label, metrics)."""
    with style():
        fig = Figure(figsize=(15, 4.2), layout="constrained")
        axes = fig.subplots(1, 3)
        for i, (label, df) in enumerate(curves):
            # markers while the points are few: a run with one evaluation is a dot, not nothing
            kw = {"label": label, "marker": "." if len(df) <= 50 else None, **line_style(i)}
            rounds = df["round"].to_numpy(dtype="float64", na_value=math.nan)
            ev = df["test_acc"].notna().to_numpy()
            axes[0].plot(rounds[ev], df["test_acc"].to_numpy(dtype="float64")[ev], **kw)
            axes[1].plot(rounds[ev], df["test_loss"].to_numpy(dtype="float64")[ev], **kw)
            axes[2].plot(rounds, df["train_loss"].to_numpy(dtype="float64"), **kw)
        titles = ["test accuracy", "test loss", "client train loss (round mean)"]
        ylabels = [metric_label("test_acc"), metric_label("test_loss"), metric_label("train_loss")]
        for ax, title, ylabel in zip(axes, titles, ylabels):
            ax.set_title(title)
            ax.set_xlabel("round")
            ax.set_ylabel(ylabel)
            rounds_axis(ax)
        if len(curves) == 1:
            fig.suptitle(curves[0][0], fontsize="medium")
        else:
            outside_legend(fig, axes[0])
        return save_figure(fig, out)


def plot_runs(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """Plot test accuracy, test loss and mean client train loss against rounds (metrics read with
    :func:`fedbench.outputs.load_metrics`, so a live or killed run shows its rounds so far)."""
    dirs = [Path(d) for d in run_dirs]
    curves = [(labels[i] if labels else _label(d), load_metrics(d)) for i, d in enumerate(dirs)]
    return _draw(curves, Path(out))


def _runs_to_plot(paths: list[Path]) -> tuple[list[tuple[Path, pd.DataFrame]], list[str]]:
    """The runs under ``paths`` that have metric rows, and what was skipped (with why)."""
    found: list[tuple[Path, pd.DataFrame]] = []
    skipped: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        if not path.is_dir():
            skipped.append(f"{path} (no such folder)")
            continue
        dirs = find_run_dirs(path, RUN_MARKERS)
        if not dirs:
            skipped.append(f"{path} (no runs)")
        for d in dirs:
            if d.resolve() in seen:
                continue
            seen.add(d.resolve())
            df = load_metrics(d)
            if len(df):
                found.append((d, df))
            else:
                skipped.append(f"{d} (no metric rows)")
    return found, skipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fedbench-plot", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories, or folders above runs (sweeps)")
    p.add_argument("-o", "--output", type=Path, default=Path("fig.png"), help="image file to write (.png, .pdf, .svg)")
    p.add_argument("--labels", nargs="+", help="one legend label per plotted run (default: the run's overrides)")
    args = p.parse_args(argv)
    found, skipped = _runs_to_plot(args.runs)
    if not found:
        print(f"fedbench-plot: nothing to plot: {', '.join(skipped)}", file=sys.stderr)
        return 2
    if args.labels and len(args.labels) != len(found):
        print(f"fedbench-plot: --labels needs {len(found)} labels, got {len(args.labels)}", file=sys.stderr)
        return 2
    if skipped:
        print(f"fedbench-plot: skipped {len(skipped)}: {', '.join(skipped)}", file=sys.stderr)
    labels = args.labels or [_label(d) for d, _ in found]
    print(_draw([(label, df) for label, (_, df) in zip(labels, found)], args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
