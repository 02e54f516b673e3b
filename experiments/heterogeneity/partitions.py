"""How skewed is each partition family across its parameter, on MNIST-shaped labels (one command).

60,000 labels in 10 balanced classes (``np.repeat(np.arange(10), 6000)`` shuffled with seed 0; a
partition depends on the labels only, so no data is downloaded), 100 clients, 5 partition seeds.
For every family and parameter value the partition is built through ``fedbench.partition.PARTITIONERS``
with ``fedbench.rng.numpy_rng(seed, "partition")`` (the stream a run uses) and summarised by
``partition_stats``. A family is a partitioner with fixed keys: besides the plain options, the composed
``dirichlet_client`` with ``sizes=lognormal`` (label x quantity skew, swept over alpha) and ``quantity`` with
``law=lognormal`` (its size law alone, label-IID). Writes next to this file:

- ``partitions.csv``: one row per (family, parameter, seed) with every scalar statistic;
- ``partitions.md``: mean and std over seeds of ``tv_mean``, ``effective_classes_mean``, ``size_gini`` and
  ``size_cv``, the nearest settings across conventions, the command and its wall time;
- ``partitions.png``: ``tv_mean`` and ``size_gini`` against ``effective_classes_mean``.

    python experiments/heterogeneity/partitions.py
"""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from fedbench.partition import PARTITIONERS, PartitionError, partition_stats
from fedbench.rng import numpy_rng

HERE = Path(__file__).resolve().parent
NUM_CLASSES = 10
PER_CLASS = 6000
NUM_CLIENTS = 100
SEEDS = (0, 1, 2, 3, 4)
ALPHAS = (0.01, 0.05, 0.1, 0.3, 0.5, 1, 5, 100)
EFF = "effective_classes_mean"
STATS = ("tv_mean", "tv_max", "effective_classes_mean", "size_gini", "size_cv", "empty_clients", "size_min", "size_max")

# Families that are not a plain partition option: label x quantity skew composed in one partition
# (dirichlet_client priors within lognormal sizes), and quantity's lognormal size law on its own.
COMPOSED = "dirichlet_client + lognormal sizes"
QUANTITY_LOGNORMAL = "quantity (lognormal)"
# (family, parameter name, values, fixed keys); each value v is passed as {parameter: v, **fixed}.
FAMILIES: list[tuple[str, str, tuple, dict]] = [
    ("dirichlet_class", "alpha", ALPHAS, {"min_size": 0}),
    ("dirichlet_client", "alpha", ALPHAS, {}),
    (COMPOSED, "alpha", ALPHAS, {"sizes": "lognormal", "sigma": 1.0, "min_size": 10}),
    ("shards", "shards_per_client", (1, 2, 3, 5, 10, 20), {}),
    ("classes_per_client", "k", (1, 2, 3, 5, 10), {}),
    ("quantity", "beta", (0.1, 0.5, 1, 5), {"law": "dirichlet", "min_size": 0}),
    (QUANTITY_LOGNORMAL, "sigma", (1.0,), {"law": "lognormal", "min_size": 10}),
    ("iid", "", (None,), {}),
]
# The PARTITIONERS entry of each family whose name is not one.
PARTITIONER = {COMPOSED: "dirichlet_client", QUANTITY_LOGNORMAL: "quantity"}
SHORT = {"shards_per_client": "s", "alpha": "α", "beta": "β", "k": "k", "sigma": "σ"}
# Okabe & Ito (2008) colour-blind-safe palette, one colour and marker per family.
COLOURS = ["#0072B2", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#D55E00", "#000000"]
MARKERS = ["o", "s", "P", "^", "D", "v", "X", "*"]
# Where each family's parameter labels sit next to its points in panels (a) and (b), in points.
OFFSETS = {
    "dirichlet_class": (5, -11),
    "dirichlet_client": (-4, 7),
    COMPOSED: (5, 4),
    "shards": (6, 2),
    "classes_per_client": (-14, -12),
    "quantity": (6, 3),
    QUANTITY_LOGNORMAL: (6, -10),
}
# Panel (b) offsets where they differ: the composed family's labels below its (wide) error bars.
OFFSETS_GINI = {COMPOSED: (-3, -30)}
# Settings of the fixed-label conventions, each matched to the Dirichlet alpha with the same tv / effective classes.
REFERENCES = [("classes_per_client", k) for k in (1, 2, 3, 5)] + [("shards", s) for s in (1, 2, 3, 5, 10, 20)]


def mnist_like_labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(NUM_CLASSES), PER_CLASS))


def measure(labels: np.ndarray) -> list[dict]:
    rows = []
    for family, param, values, fixed in FAMILIES:
        for value in values:
            keys = dict(fixed) if value is None else {param: value, **fixed}
            for seed in SEEDS:
                partitioner = PARTITIONERS[PARTITIONER.get(family, family)]
                parts = partitioner(labels, NUM_CLIENTS, rng=numpy_rng(seed, "partition"), **keys)
                stats = partition_stats(parts, labels, NUM_CLASSES)
                row = {"family": family, "param": param, "value": value, "seed": seed}
                row.update({k: stats[k] for k in STATS})
                row["unused"] = labels.size - sum(stats["sizes"])
                rows.append(row)
    return rows


def default_min_size_failures(labels: np.ndarray) -> dict[tuple[str, float], int]:
    """How many of the seeds raise with the family's default ``min_size=10`` (and default ``max_attempts``)."""
    cases = [("dirichlet_class", "alpha", a, {}) for a in ALPHAS]
    cases += [("quantity", "beta", b, {"law": "dirichlet"}) for b in (0.1, 0.5, 1, 5)]
    failed = {}
    for family, param, value, fixed in cases:
        for seed in SEEDS:
            try:
                PARTITIONERS[family](labels, NUM_CLIENTS, rng=numpy_rng(seed, "partition"), **{param: value, **fixed})
            except PartitionError:
                failed[family, value] = failed.get((family, value), 0) + 1
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


def find(summary: list[dict], family: str, value) -> dict:
    return next(s for s in summary if s["family"] == family and s["value"] == value)


def matched_alpha(summary: list[dict], family: str, key: str, target: float) -> str:
    """The ``alpha`` of ``family`` at which ``key`` equals ``target``, interpolated linearly in log(alpha)."""
    a = np.log(np.array(ALPHAS, dtype=float))
    y = np.array([find(summary, family, al)[key] for al in ALPHAS])
    if key == "tv_mean":  # decreasing in alpha; np.interp needs increasing abscissae
        a, y = a[::-1], y[::-1]
    if not y[0] <= target <= y[-1]:  # outside the grid: beyond the alpha at the nearer end of the curve
        end = a[0] if target < y[0] else a[-1]
        return f"< {min(ALPHAS):g}" if end == a.min() else f"> {max(ALPHAS):g}"
    return f"{float(np.exp(np.interp(target, y, a))):.2g}"


def match_table(summary: list[dict]) -> list[str]:
    lines = [
        "| setting | tv_mean | effective classes | dirichlet_class alpha (same tv / same classes) "
        "| dirichlet_client alpha (same tv / same classes) |",
        "|---|---:|---:|---:|---:|",
    ]
    for family, value in REFERENCES:
        s = find(summary, family, value)
        tv, eff = s["tv_mean"], s["effective_classes_mean"]
        cells = [
            f"{matched_alpha(summary, f, 'tv_mean', tv)} / {matched_alpha(summary, f, 'effective_classes_mean', eff)}"
            for f in ("dirichlet_class", "dirichlet_client")
        ]
        lines.append(f"| {label(s)} | {tv:.3f} | {eff:.2f} | {cells[0]} | {cells[1]} |")
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

    fig = plt.figure(figsize=(13, 11))
    grid = fig.add_gridspec(2, 2, height_ratios=(1.15, 1.2))
    ax_tv, ax_gini, ax_rule = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    rows = [f for f in FAMILIES if f[1]]  # the ruler's rows: families with a parameter; iid is a vertical line
    for i, (family, param, values, _) in enumerate(FAMILIES):
        sel = [find(summary, family, v) for v in values]
        x = np.array([s[EFF] for s in sel])
        name = family if not param else f"{family} ({SHORT[param]})"
        style = {"color": COLOURS[i], "marker": MARKERS[i], "ms": 6, "lw": 1.3, "capsize": 2}
        for ax, key in ((ax_tv, "tv_mean"), (ax_gini, "size_gini")):
            y = np.array([s[key] for s in sel])
            xerr, yerr = [s[EFF + "_std"] for s in sel], [s[key + "_std"] for s in sel]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, label=name, **style)
            # In (b) only the families with unequal sizes are labelled; the others lie on size_gini ~ 0. There
            # points within 1 class and 0.03 gini of a group's first point share one label, "first-last" (the
            # composed family's points share one size_gini and crowd at small alpha).
            if param and (ax is ax_tv or max(y) > 0.1):
                groups: list[list] = []  # [x, y, first value, last value]
                for s, xi, yi in zip(sel, x, y):
                    g = groups[-1] if groups else None
                    if ax is ax_gini and g and abs(xi - g[0]) < 1 and abs(yi - g[1]) < 0.03:
                        g[3] = s["value"]
                    else:
                        groups.append([xi, yi, s["value"], s["value"]])
                offset = OFFSETS_GINI.get(family, OFFSETS[family]) if ax is ax_gini else OFFSETS[family]
                for xi, yi, first, last in groups:
                    ax.annotate(
                        f"{first:g}" if first == last else f"{first:g}–{last:g}", (xi, yi),
                        textcoords="offset points", xytext=offset, fontsize=7, color=COLOURS[i],
                    )  # fmt: skip
        if not param:
            ax_rule.axvline(sel[0]["tv_mean"], color=COLOURS[i], ls=":", lw=1.2)
            continue
        row = len(rows) - 1 - rows.index((family, param, values, _))
        tv = [s["tv_mean"] for s in sel]
        ax_rule.errorbar(tv, [row] * len(tv), xerr=[s["tv_mean_std"] for s in sel], ls="none", **style)
        below = False  # a label within 0.03 of the previous one goes below the row, the next above again
        for j, (s, t) in enumerate(zip(sel, tv)):
            below = j > 0 and abs(t - tv[j - 1]) < 0.03 and not below
            ax_rule.annotate(
                f"{SHORT[param]}={s['value']:g}", (t, row), textcoords="offset points",
                xytext=(0, -9) if below else (0, 7), rotation=-60 if below else 60,
                va="top" if below else "bottom", fontsize=7.5, color=COLOURS[i],
            )  # fmt: skip
    ax_tv.set_ylabel("tv_mean (mean TV distance of a client's\nlabel mix to the global one)")
    ax_gini.set_ylabel("size_gini (Gini coefficient of client sizes)")
    for ax in (ax_tv, ax_gini):
        ax.set_xlabel("effective_classes_mean (mean exp(label entropy) per client)")
        ax.set_xticks(range(1, NUM_CLASSES + 1))
        ax.grid(alpha=0.3)
    ax_tv.set_title("(a) label skew: tv_mean against effective classes", fontsize=10)
    ax_gini.set_title("(b) size skew: size_gini against effective classes", fontsize=10)
    ax_rule.set_title("(c) tv_mean per family: settings above one another are equally label-skewed", fontsize=10)
    ax_rule.set_yticks(range(len(rows)), [f[0] for f in reversed(rows)])
    ax_rule.set_ylim(-0.6, len(rows) - 0.1)
    ax_rule.set_xlim(-0.02, 0.95)
    ax_rule.set_xlabel("tv_mean (dotted line: iid, the sampling-noise floor)")
    ax_rule.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"Partition families on MNIST-shaped labels ({NUM_CLASSES * PER_CLASS} samples, {NUM_CLASSES} classes, "
        f"{NUM_CLIENTS} clients); mean ± std over {len(SEEDS)} seeds; numbers are the swept parameter",
        fontsize=10,
    )
    handles, labels_ = ax_tv.get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=4, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def git_rev() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def readings(summary: list[dict]) -> list[str]:
    """The equivalences, in words; every number is read from ``summary``."""

    def at(family: str, value) -> dict:
        return find(summary, family, value)

    def tc(s: dict) -> str:
        return f"tv {s['tv_mean']:.3f}, {s['effective_classes_mean']:.2f} classes"

    pairs = ", ".join(
        f"{a:g} ↔ {NUM_CLASSES * a:g} (tv {at('dirichlet_class', a)['tv_mean']:.2f} / "
        f"{at('dirichlet_client', NUM_CLASSES * a)['tv_mean']:.2f})"
        for a in (0.01, 0.05, 0.1, 0.5)
    )
    dc01, dc05, dc03 = at("dirichlet_class", 0.1), at("dirichlet_class", 0.5), at("dirichlet_class", 0.3)
    k2, k3, k5 = at("classes_per_client", 2), at("classes_per_client", 3), at("classes_per_client", 5)
    s2, s3, s5, s10 = at("shards", 2), at("shards", 3), at("shards", 5), at("shards", 10)
    iid, q01, dcl100 = at("iid", None), at("quantity", 0.1), at("dirichlet_client", 100)
    dc100 = at("dirichlet_class", 100)
    ql = at(QUANTITY_LOGNORMAL, 1.0)
    mid = [a for a in ALPHAS if 0.05 <= a <= 5]
    gap = max(abs(at(COMPOSED, a)["tv_mean"] - at("dirichlet_client", a)["tv_mean"]) for a in mid)
    ginis = {round(at(COMPOSED, a)["size_gini"], 6) for a in ALPHAS}
    same_sizes = (
        " (the sizes are drawn first, from the same stream, so a seed has the same sizes at every alpha)"
        if len(ginis) == 1
        else ""
    )
    cm, cl = at(COMPOSED, 0.5), at("dirichlet_client", 0.5)
    c100, c001, cl001 = at(COMPOSED, 100), at(COMPOSED, 0.01), at("dirichlet_client", 0.01)
    return [
        f"1. **`dirichlet_client` alpha ≈ {NUM_CLASSES} × `dirichlet_class` alpha** (the number of classes): "
        f"class alpha ↔ client alpha {pairs}. Under `dirichlet_class` a client's class shares are independent "
        f"Gamma(alpha) draws (each class's Dir(alpha 1_N) normalises over the {NUM_CLIENTS} clients, not over "
        "the classes), so its label mix is about Dir(alpha 1_K); under `dirichlet_client` it is "
        f"Dir(alpha p) = Dir(alpha/{NUM_CLASSES} 1_K) with balanced classes. The same alpha is therefore about "
        f"{NUM_CLASSES}× more skewed under `dirichlet_client`: even alpha=100 leaves {tc(dcl100)} there.",
        f"2. **McMahan's `shards` s=2 ≈ `classes_per_client` k=2 ≈ `dirichlet_class` alpha≈0.05 ≈ "
        f"`dirichlet_client` alpha=0.5**: {tc(s2)}; {tc(k2)}; "
        f"{tc(at('dirichlet_class', 0.05))}; {tc(at('dirichlet_client', 0.5))}. By tv the class-convention "
        f"match is alpha {matched_alpha(summary, 'dirichlet_class', 'tv_mean', k2['tv_mean'])}, by effective "
        f"classes alpha {matched_alpha(summary, 'dirichlet_class', EFF, k2[EFF])}"
        f", but at alpha=0.05 (min_size=0) {at('dirichlet_class', 0.05)['empty_clients']:.0f} clients are empty "
        "and sizes vary (gini "
        f"{at('dirichlet_class', 0.05)['size_gini']:.2f}) where shards and k=2 have equal or near-equal sizes.",
        f"3. **`dirichlet_class` alpha=0.1 lies between k=2 and k=3, closest to `shards` s=3**: {tc(dc01)}, "
        f'against k=2 {tc(k2)}, k=3 {tc(k3)} and s=3 {tc(s3)}. So "alpha=0.1 ≈ two classes per client" '
        "holds for effective classes but overstates the skew by tv (k=2 is tv "
        f"{k2['tv_mean'] - dc01['tv_mean']:.2f} higher).",
        f"4. **The library default `dirichlet_class` alpha=0.5 ≈ `classes_per_client` k=5 ≈ `dirichlet_client` "
        f"alpha=5**: {tc(dc05)}; {tc(k5)}; {tc(at('dirichlet_client', 5))}. `shards` s=5 is not k=5 "
        f"({tc(s5)}): it matches `dirichlet_class` alpha=0.3 ({tc(dc03)}), because a client's shards can repeat "
        f"a label; from s=5 on shards and k diverge (s=10 gives {tc(s10)}, not 10 classes).",
        f"5. **The IID floor is not 0, and `quantity` is not label-skewed although its tv is**: `iid` clients "
        f"of {NUM_CLASSES * PER_CLASS // NUM_CLIENTS} samples have {tc(iid)} from sampling noise alone, and "
        f"`dirichlet_class` alpha=100 ({tc(dc100)}) is as IID as `iid`. `quantity` (label-IID by construction) "
        f"at beta=0.1 shows {tc(q01)}, about `shards` s=20, only because {q01['empty_clients']:.0f} of "
        f"{NUM_CLIENTS} clients are empty and many hold a handful of samples; its skew is in the sizes (gini "
        f"{q01['size_gini']:.2f}). Compare label-skew settings by tv only well above "
        f"{iid['tv_mean']:.2f}, and with similar client sizes.",
        f"6. **Composing label x quantity skew (`{COMPOSED}`) keeps `dirichlet_client`'s label skew at the same "
        f"alpha and adds the size skew of `quantity`'s lognormal law**: at alpha {mid[0]:g} to {mid[-1]:g} its "
        f"`tv_mean` is within {gap:.3f} of plain `dirichlet_client` (alpha=0.5: {tc(cm)}, against {tc(cl)}), and its "
        f"size_gini is {cm['size_gini']:.2f} ± {cm['size_gini_std']:.2f} (size_cv {cm['size_cv']:.2f}) at every "
        f"alpha{same_sizes}, against {ql['size_gini']:.2f} ± {ql['size_gini_std']:.2f} (size_cv "
        f"{ql['size_cv']:.2f}) for `{QUANTITY_LOGNORMAL}` with the same sigma=1, within the seeds' spread. At the "
        "ends of the grid the composition moves the label skew: at alpha=100 it "
        f"reads tv {c100['tv_mean']:.3f} against {dcl100['tv_mean']:.3f}, the small clients' sampling noise (as "
        f"`quantity (lognormal)`'s {ql['tv_mean']:.3f} against `iid`'s {iid['tv_mean']:.3f}); at alpha=0.01, tv "
        f"{c001['tv_mean']:.3f} against {cl001['tv_mean']:.3f} ({c001[EFF]:.2f} against {cl001[EFF]:.2f} classes), "
        f"because large clients (the largest holds {c001['size_max']:.0f} samples, mean over the seeds, against "
        f"{PER_CLASS} per class) run out of what is left of their one class and fill up from others.",
    ]


def write_md(summary: list[dict], failed: dict[tuple[str, float], int], wall: float, path: Path) -> None:
    def pm(s: dict, k: str, digits: int) -> str:
        return f"{s[k]:.{digits}f} ± {s[k + '_std']:.{digits}f}"

    table = [
        "| family | parameter | tv_mean | effective classes | size_gini | size_cv | empty clients |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        param = "" if s["value"] is None else f"{s['param']}={s['value']:g}"
        table.append(
            f"| {s['family']} | {param} | {pm(s, 'tv_mean', 3)} | {pm(s, 'effective_classes_mean', 2)} "
            f"| {pm(s, 'size_gini', 3)} | {pm(s, 'size_cv', 2)} | {s['empty_clients']:.1f} |"
        )

    def failures(family: str, name: str) -> str:
        txt = ", ".join(f"{name}={v:g} ({c} of {len(SEEDS)} seeds)" for (f, v), c in failed.items() if f == family)
        return txt or "no setting"

    nl = "\n"
    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = f"{ncores} core{'s' if ncores != 1 else ''}"
    text = f"""# Partition families compared: label skew and size skew on MNIST-shaped labels

```bash
python experiments/heterogeneity/partitions.py   # {wall:.0f} s wall on {cores}, plus ~3 s of imports
```

Setup: {NUM_CLASSES * PER_CLASS} labels in {NUM_CLASSES} balanced classes (`np.repeat(np.arange(10), 6000)`
shuffled with seed 0; a partition depends only on the labels, so no data is loaded), {NUM_CLIENTS} clients,
partition seeds {", ".join(map(str, SEEDS))} (`fedbench.rng.numpy_rng(seed, "partition")`, the stream a run
uses), every partitioner called through `fedbench.partition.PARTITIONERS` and summarised by `partition_stats`.
Values are mean ± sample std (ddof=1) over the {len(SEEDS)} seeds. `partitions.csv` has every seed, with
`tv_max`, `size_min`, `size_max` and the unused samples as well; `partitions.png` is the figure. Measured at
fedbench {git_rev()}, numpy {np.__version__}, Python {platform.python_version()}.

Keys that differ from the defaults, and why:

- `dirichlet_class`: **`min_size=0`** (default 10). With the defaults `min_size=10, max_attempts=100` it raises
  `PartitionError` here at {failures("dirichlet_class", "alpha")},
  so the smallest alphas could not be measured; with `min_size=0` every draw is kept and some clients are
  empty (last column; the per-client means `tv_mean` and effective classes leave empty clients out).
  `balance=true` (the default, NIID-Bench's cap of `n / N` samples per client) is kept; it is what keeps
  `size_gini` moderate at alpha >= 0.1.
- `quantity`: `law=dirichlet`, **`min_size=0`** (default 10). NIID-Bench's redraw until every client has 10
  samples (defaults `min_size=10, max_attempts=100000`) raises `PartitionError` here at
  {failures("quantity", "beta")};
  `min_size=0` is the unconditioned `Dir(beta 1_N)` size law, used at every beta so that the sweep is one law.
  `quantity` is **label-IID**: every client is a uniform random sample, only the sizes differ.
- `dirichlet_client`: `client_size` default (`60000 // 100 = 600`), so every sample is used and the last
  clients, filled from what is left, are less skewed than their prior (docs/partitions.md).
- `{COMPOSED}`: `partition=dirichlet_client partition.sizes=lognormal`, `sigma=1.0` and **`min_size=10`**
  (both the defaults), `client_size` default (600, the mean size; the sizes sum to 60,000, so every
  sample is used). The lognormal law gives every client `min_size` samples first and cuts the rest by the
  weights, with no redraw, so `min_size=10` runs at every alpha (no seed raises); the sizes are drawn first,
  from the same stream, so a seed has the same sizes at every alpha. The same fill-in-order caveat as
  `dirichlet_client` holds, stronger: a client larger than a class's 6,000 samples must take a second class.
- `{QUANTITY_LOGNORMAL}`: `partition=quantity partition.law=lognormal`, `sigma=1.0`, `min_size=10` (the
  defaults): the composed family's size law on its own, label-IID, for comparison.
- `shards`, `classes_per_client`, `iid`: defaults apart from the swept key.

{nl.join(table)}

`tv_mean`: mean over non-empty clients of the total-variation distance between the client's label mix and the
global one (0 = the global mix, 0.9 = a single class here). Effective classes (`effective_classes_mean`): mean
of `exp(label entropy)` (1 = one class, 10 = balanced). `size_gini`: Gini coefficient of the {NUM_CLIENTS}
client sizes (0 = equal); `size_cv`: their std / mean (0 = equal). Empty clients: mean count over the seeds.

![tv_mean and size_gini against effective classes, per family](partitions.png)

## Comparable settings across conventions

{nl.join(readings(summary))}

The Dirichlet alpha that gives the same `tv_mean`, or the same effective classes, as each fixed-label setting
(linear interpolation of the mean curves above in log alpha; "<" or ">" when outside the measured grid):

{nl.join(match_table(summary))}

The two columns disagree where the label mixes have different shapes: `tv_mean` is driven by the dominant
classes, effective classes also by the small ones (e.g. a `shards` s=10 client holds about 6 labels in unequal
amounts, a Dirichlet client a few large classes and a long tail).
"""
    path.write_text(text)


def main() -> None:
    t0 = time.perf_counter()
    labels = mnist_like_labels()
    rows = measure(labels)
    failed = default_min_size_failures(labels)
    summary = summarise(rows)
    write_csv(rows, HERE / "partitions.csv")
    plot(summary, HERE / "partitions.png")
    wall = time.perf_counter() - t0
    write_md(summary, failed, wall, HERE / "partitions.md")
    for s in summary:
        print(f"{label(s):40s} tv {s['tv_mean']:.3f}  eff {s['effective_classes_mean']:.2f}  gini {s['size_gini']:.3f}")
    print(f"default min_size=10 fails (family, value): seeds {failed}; wall {wall:.1f} s")


if __name__ == "__main__":
    main()
