"""Accuracy and loss curves of runs: ``fedbench-plot PATH... -o fig.png [--x uplink_bytes_cum]``.

Each PATH is a run directory or any folder above runs (a sweep): every run below it is plotted.
Runs without metric rows and folders without runs are skipped and named in one line on stderr;
the command fails (exit 2) only when nothing at all can be plotted.

``fedbench-plot --partition RUN_DIR -o partition.png`` draws a run's partition from its
``partition.json`` instead: each client's label counts as stacked bars (largest client first) and
the histogram of client sizes (:func:`partition_figure`).

Also home of the figure style shared with ``fedbench-report``: a colour-blind-safe palette
(Okabe-Ito), constrained layout, and atomic PNG/PDF writes.
"""

from __future__ import annotations

import argparse
import io
import json
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
from fedbench.outputs import METRICS_LOG, WriteError, atomic_write_bytes, load_metrics

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
PARTITION_FILE = "partition.json"
# Up to this many clients the partition's bars are drawn as bars (with gaps, one tick per client
# up to PARTITION_TICKED); beyond, as one gapless step area per class (thousands of clients times
# dozens of classes would otherwise be hundreds of thousands of rectangles).
PARTITION_BARS = 100
PARTITION_RECTS = 2000  # and at most this many rectangles (clients x classes): drawing them is slow
PARTITION_TICKED = 30
# Scalar statistics named in the partition figure's subtitle, when partition.json has them.
PARTITION_SUBTITLE = [
    ("tv_mean", "TV to global mean {:.3f}"),
    ("effective_classes_mean", "effective classes mean {:.2f}"),
    ("size_gini", "size Gini {:.3f}"),
]
METRIC_LABELS = {
    "test_acc": "test accuracy (fraction)",
    "test_loss": "test loss (cross-entropy)",
    "train_loss": "train loss (sample-weighted mean over the round's clients)",
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


X_AXES = {
    "round": "round",
    "uplink_bytes_cum": "cumulative uplink bytes",
    "downlink_bytes_cum": "cumulative downlink bytes",
    "wall_time_s": "wall time (s)",
}


def _draw(curves: list[tuple[str, pd.DataFrame]], out: Path, x: str = "round") -> Path:
    """Test accuracy, test loss and train loss against ``x`` (a key of :data:`X_AXES`: rounds,
    cumulative uplink or downlink bytes, wall time), one line per (label, metrics)."""
    with style():
        fig = Figure(figsize=(15, 4.2), layout="constrained")
        axes = fig.subplots(1, 3)
        for i, (label, df) in enumerate(curves):
            # markers while the points are few: a run with one evaluation is a dot, not nothing
            kw = {"label": label, "marker": "." if len(df) <= 50 else None, **line_style(i)}
            rounds = df[x].to_numpy(dtype="float64", na_value=math.nan)
            ev = df["test_acc"].notna().to_numpy()
            axes[0].plot(rounds[ev], df["test_acc"].to_numpy(dtype="float64")[ev], **kw)
            axes[1].plot(rounds[ev], df["test_loss"].to_numpy(dtype="float64")[ev], **kw)
            axes[2].plot(rounds, df["train_loss"].to_numpy(dtype="float64"), **kw)
        titles = ["test accuracy", "test loss", "client train loss"]
        ylabels = [metric_label("test_acc"), metric_label("test_loss"), metric_label("train_loss")]
        for ax, title, ylabel in zip(axes, titles, ylabels):
            ax.set_title(title)
            ax.set_xlabel(X_AXES[x])
            ax.set_ylabel(ylabel)
            if x == "round":
                rounds_axis(ax)
            elif x.endswith("bytes_cum"):
                bytes_axis(ax, np.concatenate([df[x].to_numpy(dtype="float64") for _, df in curves]))
        if len(curves) == 1:
            fig.suptitle(curves[0][0], fontsize="medium")
        else:
            outside_legend(fig, axes[0])
        return save_figure(fig, out)


def plot_runs(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None, x: str = "round") -> Path:
    """Plot test accuracy, test loss and mean client train loss against ``x`` (rounds by default;
    see :data:`X_AXES`; metrics read with :func:`fedbench.outputs.load_metrics`, so a live or
    killed run shows its rounds so far)."""
    dirs = [Path(d) for d in run_dirs]
    curves = [(labels[i] if labels else _label(d), load_metrics(d)) for i, d in enumerate(dirs)]
    return _draw(curves, Path(out), x)


class PartitionFileError(ValueError):
    """partition.json is absent, unreadable or not a partition (the message is one line)."""


def load_partition(path: str | Path) -> dict:
    """The statistics in a run's ``partition.json`` (``path`` is the run directory or the file),
    checked: ``sizes`` a list of N non-negative numbers, ``label_hist`` N rows of equally many
    non-negative counts."""
    path = Path(path)
    file = path / PARTITION_FILE if path.is_dir() else path
    if not path.exists():
        raise PartitionFileError(f"{path}: no such run folder")
    if not file.is_file():
        raise PartitionFileError(f"{path}: no {PARTITION_FILE} (the run has not built its partition yet?)")
    try:
        stats = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PartitionFileError(f"{file}: unreadable: {e}") from None
    if not isinstance(stats, dict) or "sizes" not in stats or "label_hist" not in stats:
        raise PartitionFileError(f"{file}: not a partition (needs the keys sizes and label_hist)")
    try:
        sizes = np.asarray(stats["sizes"], dtype=float)
        hist = np.asarray(stats["label_hist"], dtype=float)
    except (TypeError, ValueError):
        raise PartitionFileError(
            f"{file}: sizes and label_hist must be numbers, label_hist rows of one length"
        ) from None
    n = len(sizes) if sizes.ndim == 1 else -1
    if n < 1 or hist.ndim != 2 or hist.shape[0] != n or hist.shape[1] < 1:
        raise PartitionFileError(
            f"{file}: sizes must be a list of clients and label_hist one row per client of class counts, "
            f"got shapes {sizes.shape} and {hist.shape}"
        )
    if not (np.isfinite(sizes).all() and np.isfinite(hist).all() and (sizes >= 0).all() and (hist >= 0).all()):
        raise PartitionFileError(f"{file}: sizes and label_hist must be finite non-negative counts")
    return stats


def _class_colours(num_classes: int) -> tuple[list, object | None]:
    """One colour per class: Okabe-Ito while it has enough colours, else evenly spaced viridis
    (returned with the colormap, for a colourbar instead of a legend)."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    if num_classes <= len(OKABE_ITO):
        return OKABE_ITO[:num_classes], None
    colours = colormaps["viridis"](np.linspace(0, 1, num_classes))
    return list(colours), ListedColormap(colours)


def partition_figure(stats: dict, title: str | None = None) -> Figure:
    """The partition in ``stats`` (a ``partition.json`` dict, see :func:`load_partition`): left,
    each client's label counts stacked (bar height = the client's samples, one colour per class),
    clients sorted by ``sizes``, largest first (ties keep client order); right, the histogram of
    client sizes. The subtitle names the heterogeneity statistics present (``tv_mean``,
    ``effective_classes_mean``, ``size_gini``, ``empty_clients``).

    Up to ``PARTITION_BARS`` clients (and ``PARTITION_RECTS`` bars) the left panel is one bar
    container per class (bars in sorted order, ``bottom`` the classes below); beyond, one gapless
    ``StepPatch`` per class (in ``ax.patches``, with the classes below as ``baseline``)."""
    sizes = np.asarray(stats["sizes"], dtype=float)
    hist = np.asarray(stats["label_hist"], dtype=float)
    n, num_classes = hist.shape
    order = np.argsort(-sizes, kind="stable")
    rows = hist[order]
    tops = np.cumsum(rows, axis=1)
    bottoms = tops - rows
    colours, cmap = _class_colours(num_classes)
    with style():
        fig = Figure(figsize=(13, 4.5), layout="constrained")
        ax, ax_sizes = fig.subplots(1, 2, width_ratios=[3, 1])
        x = np.arange(n)
        if n <= PARTITION_BARS and n * num_classes <= PARTITION_RECTS:
            for k in range(num_classes):
                ax.bar(x, rows[:, k], bottom=bottoms[:, k], width=0.8, color=colours[k], label=str(k), linewidth=0)
        else:
            from matplotlib.patches import StepPatch

            # add_artist, not stairs/add_patch: updating the data limits from each step of the
            # paths takes seconds for thousands of clients; the limits are set below instead
            edges = np.arange(n + 1) - 0.5
            for k in range(num_classes):
                step = StepPatch(tops[:, k], edges, baseline=bottoms[:, k], fill=True, color=colours[k], linewidth=0)
                ax.add_artist(step)
            ax.set_ylim(0, max(1.0, tops[:, -1].max()) * 1.05)
        ax.set_xlim(-0.5, n - 0.5)
        ax.grid(axis="x", visible=False)
        if n <= PARTITION_TICKED:
            ax.set_xticks(x, [str(int(i)) for i in order], fontsize="small" if n > 12 else None)
            ax.set_xlabel("client (largest first)")
        else:
            from matplotlib import ticker

            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
            ax.set_xlabel("client rank by size (0 = largest)")
        ax.set_ylabel("samples")
        ax.set_title(f"label counts per client ({n} clients, {num_classes} classes)")
        ax_sizes.hist(sizes, bins=min(50, max(5, round(math.sqrt(n)))), color=OKABE_ITO[0])
        ax_sizes.set_xlabel("samples per client")
        ax_sizes.set_ylabel("clients")
        ax_sizes.yaxis.get_major_locator().set_params(integer=True)
        ax_sizes.set_title("client sizes")
        if cmap is None:
            from matplotlib.patches import Patch

            handles = [Patch(color=c, label=str(k)) for k, c in enumerate(colours)]
            fig.legend(handles=handles, loc="outside right upper", title="class", alignment="left")
        else:
            from matplotlib import ticker
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import BoundaryNorm

            norm = BoundaryNorm(np.arange(num_classes + 1) - 0.5, num_classes)
            bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[ax, ax_sizes], location="right")
            bar.set_label("class")
            bar.locator = ticker.MaxNLocator(nbins=10, integer=True)
            bar.update_ticks()
            bar.minorticks_off()
        facts = [f"{int(sizes.sum())} samples"]
        for key, fmt in PARTITION_SUBTITLE:
            value = stats.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                facts.append(fmt.format(value))
        empty = stats.get("empty_clients")
        if isinstance(empty, int) and not isinstance(empty, bool) and empty > 0:
            facts.append(f"empty clients {empty}")
        fig.suptitle("\n".join([*([title] if title else []), " · ".join(facts)]), fontsize="medium")
    return fig


def plot_partition(run_dir: str | Path, out: str | Path) -> Path:
    """Draw ``partition_figure`` of a run's ``partition.json`` to ``out`` (format from the suffix,
    PNG without one), atomically; :class:`PartitionFileError` when the file is absent or bad."""
    run_dir = Path(run_dir)
    stats = load_partition(run_dir)
    fig = partition_figure(stats, title=_label(run_dir) if run_dir.is_dir() else str(run_dir))
    with style():
        return save_figure(fig, out)


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
    p.add_argument("runs", nargs="*", type=Path, help="run directories, or folders above runs (sweeps)")
    p.add_argument(
        "--partition",
        metavar="RUN_DIR",
        type=Path,
        help="instead of curves, draw the run's partition.json: label counts per client and client sizes",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="image file to write (.png, .pdf, .svg; default fig.png, or partition.png with --partition)",
    )
    p.add_argument("--labels", nargs="+", help="one legend label per plotted run (default: the run's overrides)")
    p.add_argument(
        "--x",
        choices=list(X_AXES),
        default="round",
        help="x axis: round (default), uplink_bytes_cum or downlink_bytes_cum (log scale), wall_time_s",
    )
    args = p.parse_args(argv)
    if args.partition is not None:
        if args.runs or args.labels:
            p.error("--partition takes one run directory and no other runs or --labels")
        try:
            print(plot_partition(args.partition, args.output or Path("partition.png")))
        except (PartitionFileError, WriteError) as e:
            print(f"fedbench-plot: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.runs:
        p.error("the following arguments are required: runs (or --partition RUN_DIR)")
    args.output = args.output or Path("fig.png")
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
    print(_draw([(label, df) for label, (_, df) in zip(labels, found)], args.output, args.x))
    return 0


if __name__ == "__main__":
    sys.exit(main())
