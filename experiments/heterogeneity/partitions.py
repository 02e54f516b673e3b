"""How skewed is each partition family across its parameter, on MNIST-shaped labels (one command).

60,000 labels in 10 balanced classes (``np.repeat(np.arange(10), 6000)`` shuffled with seed 0; a
partition depends on the labels only, so no data is downloaded), 100 clients, 5 partition seeds.
For every family and parameter value the partition is built through ``fedbench.partition.PARTITIONERS``
with ``fedbench.rng.numpy_rng(seed, "partition")`` (the stream a run uses) and summarised by
``partition_stats``. Writes next to this file:

- ``partitions.csv``: one row per (family, parameter, seed) with every scalar statistic;
- ``partitions.md``: mean and std over seeds of ``tv_mean``, ``effective_classes_mean`` and
  ``size_gini``, the nearest settings across conventions, the command and its wall time;
- ``partitions.png``: ``tv_mean`` and ``size_gini`` against ``effective_classes_mean``.

    python experiments/heterogeneity/partitions.py
"""

from __future__ import annotations

import csv
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from fedbench.partition import PARTITIONERS, partition_stats
from fedbench.rng import numpy_rng

HERE = Path(__file__).resolve().parent
NUM_CLASSES = 10
PER_CLASS = 6000
NUM_CLIENTS = 100
SEEDS = (0, 1, 2, 3, 4)
ALPHAS = (0.01, 0.05, 0.1, 0.3, 0.5, 1, 5, 100)
STATS = ("tv_mean", "tv_max", "effective_classes_mean", "size_gini", "size_cv", "empty_clients", "size_min")

# (family, parameter name, values, fixed keys); each value v is passed as {parameter: v, **fixed}.
FAMILIES: list[tuple[str, str, tuple, dict]] = [
    ("dirichlet_class", "alpha", ALPHAS, {"min_size": 0}),
    ("dirichlet_client", "alpha", ALPHAS, {}),
    ("shards", "shards_per_client", (1, 2, 3, 5, 10, 20), {}),
    ("classes_per_client", "k", (1, 2, 3, 5, 10), {}),
    ("quantity", "beta", (0.1, 0.5, 1, 5), {"law": "dirichlet", "min_size": 0}),
    ("iid", "", (None,), {}),
]
SHORT = {"shards_per_client": "s", "alpha": "α", "beta": "β", "k": "k"}
# Okabe & Ito (2008) colour-blind-safe palette, one colour and marker per family.
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "*"]
# Reference settings of the "hard" conventions, each matched to the nearest Dirichlet setting below.
REFERENCES = [("classes_per_client", 1), ("classes_per_client", 2), ("shards", 2), ("classes_per_client", 5)]


def mnist_like_labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(NUM_CLASSES), PER_CLASS))


def measure(labels: np.ndarray) -> list[dict]:
    rows = []
    for family, param, values, fixed in FAMILIES:
        for value in values:
            keys = dict(fixed) if value is None else {param: value, **fixed}
            for seed in SEEDS:
                parts = PARTITIONERS[family](labels, NUM_CLIENTS, rng=numpy_rng(seed, "partition"), **keys)
                stats = partition_stats(parts, labels, NUM_CLASSES)
                row = {"family": family, "param": param, "value": value, "seed": seed}
                row.update({k: stats[k] for k in STATS})
                row["unused"] = labels.size - sum(stats["sizes"])
                rows.append(row)
    return rows


def min_size_failures(labels: np.ndarray) -> list[float]:
    """Alphas at which dirichlet_class with its default min_size=10, max_attempts=100 raises (seed 0)."""
    failed = []
    for alpha in ALPHAS:
        try:
            PARTITIONERS["dirichlet_class"](labels, NUM_CLIENTS, rng=numpy_rng(0, "partition"), alpha=alpha)
        except ValueError:
            failed.append(alpha)
    return failed


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sample std (ddof=1) over seeds of every statistic, per (family, value), in FAMILIES order."""
    out = []
    for family, param, values, _ in FAMILIES:
        for value in values:
            sel = [r for r in rows if r["family"] == family and r["value"] == value]
            s = {"family": family, "param": param, "value": value}
            for k in (*STATS, "unused"):
                x = np.array([r[k] for r in sel], dtype=float)
                s[k], s[k + "_std"] = float(x.mean()), float(x.std(ddof=1))
            out.append(s)
    return out


def label(s: dict) -> str:
    return "iid" if s["value"] is None else f"{s['family']} {s['param']}={s['value']:g}"


def nearest(summary: list[dict], ref: dict, family: str) -> dict:
    """The setting of ``family`` closest to ``ref`` in (tv_mean, effective_classes_mean / 10)."""

    def dist(s: dict) -> float:
        return float(np.hypot(s["tv_mean"] - ref["tv_mean"], (s["effective_classes_mean"] - ref["effective_classes_mean"]) / NUM_CLASSES))

    return min((s for s in summary if s["family"] == family), key=dist)


def find(summary: list[dict], family: str, value) -> dict:
    return next(s for s in summary if s["family"] == family and s["value"] == value)


def fmt(s: dict) -> str:
    return f"tv {s['tv_mean']:.2f}, {s['effective_classes_mean']:.1f} classes"


def equivalences(summary: list[dict]) -> list[str]:
    lines = []
    for family, value in REFERENCES:
        ref = find(summary, family, value)
        dc, dcl = nearest(summary, ref, "dirichlet_class"), nearest(summary, ref, "dirichlet_client")
        lines.append(
            f"- **{label(ref)}** ({fmt(ref)}) is nearest to **{label(dc)}** ({fmt(dc)}) and "
            f"**{label(dcl)}** ({fmt(dcl)})."
        )
    return lines


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for i, (family, param, values, _) in enumerate(FAMILIES):
        sel = [find(summary, family, v) for v in values]
        x = np.array([s["effective_classes_mean"] for s in sel])
        xe = np.array([s["effective_classes_mean_std"] for s in sel])
        name = family if not param else f"{family} ({SHORT[param]})"
        for ax, key in zip(axes, ("tv_mean", "size_gini")):
            y = np.array([s[key] for s in sel])
            ye = np.array([s[key + "_std"] for s in sel])
            ax.errorbar(x, y, xerr=xe, yerr=ye, color=COLOURS[i], marker=MARKERS[i], ms=6, lw=1.3, capsize=2, label=name)
            if param:
                for s, xi, yi in zip(sel, x, y):
                    ax.annotate(
                        f"{SHORT[param]}={s['value']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=COLOURS[i],
                    )  # fmt: skip
    axes[0].set_ylabel("tv_mean: mean TV distance of a client's label mix to the global one")
    axes[1].set_ylabel("size_gini: Gini coefficient of client sizes")
    for ax in axes:
        ax.set_xlabel("effective_classes_mean: mean exp(label entropy) per client")
        ax.set_xticks(range(1, NUM_CLASSES + 1))
        ax.grid(alpha=0.3)
    axes[0].set_title("label skew")
    axes[1].set_title("size skew")
    fig.suptitle(
        f"Partition families on MNIST-shaped labels ({NUM_CLASSES * PER_CLASS} samples, {NUM_CLASSES} classes, "
        f"{NUM_CLIENTS} clients); mean ± std over {len(SEEDS)} seeds",
        fontsize=10,
    )
    handles, labels_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=len(FAMILIES), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def git_rev() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def write_md(summary: list[dict], failed: list[float], wall: float, path: Path) -> None:
    def pm(s: dict, k: str, digits: int) -> str:
        return f"{s[k]:.{digits}f} ± {s[k + '_std']:.{digits}f}"

    table = [
        "| family | parameter | tv_mean | effective classes | size_gini | empty clients |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in summary:
        param = "" if s["value"] is None else f"{s['param']}={s['value']:g}"
        table.append(
            f"| {s['family']} | {param} | {pm(s, 'tv_mean', 3)} | {pm(s, 'effective_classes_mean', 2)} "
            f"| {pm(s, 'size_gini', 3)} | {s['empty_clients']:.1f} |"
        )
    failed_txt = ", ".join(f"{a:g}" for a in failed) or "none"
    text = f"""# Partition families compared: label skew and size skew on MNIST-shaped labels

```bash
python experiments/heterogeneity/partitions.py   # {wall:.0f} s wall on this machine (2 cores); writes the 3 files below
```

Setup: {NUM_CLASSES * PER_CLASS} labels in {NUM_CLASSES} balanced classes (`np.repeat(np.arange(10), 6000)` shuffled
with seed 0; a partition depends only on the labels, so no data is loaded), {NUM_CLIENTS} clients, partition
seeds {", ".join(map(str, SEEDS))} (`fedbench.rng.numpy_rng(seed, "partition")`, the stream a run uses), every
partitioner called through `fedbench.partition.PARTITIONERS` and summarised by `partition_stats`. Values are
mean ± sample std (ddof=1) over the {len(SEEDS)} seeds; `partitions.csv` has every seed and also `tv_max`,
`size_cv`, `size_min` and the unused samples. Measured at fedbench {git_rev()}, numpy {np.__version__}, Python
{platform.python_version()}.

Keys that differ from the defaults, and why:

- `dirichlet_class`: `min_size=0` (default 10). With the default `min_size=10, max_attempts=100` it raises
  `PartitionError` at alpha in {{{failed_txt}}} (seed 0), so small alpha could not be measured at all;
  `min_size=0` keeps every draw, so a few clients can be empty (last column; the per-client means leave empty
  clients out). `balance=true` (the default, NIID-Bench's cap at `n / N` samples per client) is kept: it is
  why `size_gini` stays moderate even at tiny alpha.
- `quantity`: `law=dirichlet`, `min_size=0` (default 10). NIID-Bench's redraw until every client has 10
  samples accepts about 5e-6 of the draws at beta 0.5 with 100 clients (docs/partitions.md) and essentially
  none at beta 0.1, so the default fails here; `min_size=0` is the unconditioned `Dir(beta 1_N)` law.
- `dirichlet_client`: `client_size` default (`60000 // 100 = 600`), so all samples are used and the last
  clients, filled from what is left, are less skewed than their prior (docs/partitions.md).
- `shards`, `classes_per_client`, `iid`: defaults apart from the swept key.

| family | parameter | tv_mean | effective classes | size_gini | empty clients |
|---|---|---:|---:|---:|---:|
""".replace("| family | parameter | tv_mean | effective classes | size_gini | empty clients |\n|---|---|---:|---:|---:|---:|\n", "")
    text += "\n".join(table) + "\n"
    text += f"""
`tv_mean`: mean over non-empty clients of the total-variation distance between the client's label mix and the
global one (0 = global mix, 0.9 = a single class here). Effective classes: mean of `exp(label entropy)`
(1 = one class, 10 = balanced). `size_gini`: Gini coefficient of the {NUM_CLIENTS} client sizes (0 = equal).
Empty clients: mean count over seeds.

![tv_mean and size_gini against effective classes](partitions.png)

## Comparable settings across conventions

Nearest settings in (`tv_mean`, effective classes / 10), computed by the script from the table above:

{chr(10).join(equivalences(summary))}

Reading the table:

{{reading}}
"""
    path.write_text(text)


def main() -> None:
    t0 = time.perf_counter()
    labels = mnist_like_labels()
    rows = measure(labels)
    failed = min_size_failures(labels)
    summary = summarise(rows)
    write_csv(rows, HERE / "partitions.csv")
    plot(summary, HERE / "partitions.png")
    wall = time.perf_counter() - t0
    write_md(summary, failed, wall, HERE / "partitions.md")
    for s in summary:
        print(f"{label(s):40s} tv {s['tv_mean']:.3f}  eff {s['effective_classes_mean']:.2f}  gini {s['size_gini']:.3f}")
    print("\n".join(equivalences(summary)))
    print(f"dirichlet_class min_size=10 fails at alpha {failed}; wall {wall:.1f} s")


if __name__ == "__main__":
    main()
