"""Test accuracy against cumulative uplink bytes for every uplink codec, with and without error feedback (one command).

The sweep runs FedAvg on the default setting (scikit-learn's 8x8 digits, cnn_small, 20 clients,
10 per round, 100 rounds) for every uplink scheme x error feedback {none, ef} x
``partition.alpha`` in {0.1, 1, iid} x seeds. Hydra cannot sweep a key that only some options of
a group have (``uplink.error_feedback``: not in ``uplink=none`` nor ``sign_majority``;
``partition.alpha``: not in ``partition=iid``), so the sweep is six ``fedbench -m`` multiruns
(joblib launcher), one folder each under ``--out``:

    {dir,iid}_fp32       uplink=none                       (the uncompressed baseline)
    {dir,iid}_majority   uplink=sign_majority              (no error feedback key)
    {dir,iid}_lossy      uplink=<11 codecs> uplink.error_feedback=none,ef

``dir_*`` is ``partition=dirichlet_class partition.alpha=0.1,1``, ``iid_*`` is ``partition=iid``.
Each multirun is resumable: a relaunch skips finished runs by config hash.

    python experiments/compression/compression.py                    # the full sweep (216 runs)
    python experiments/compression/compression.py --plot-only        # redraw from finished runs
    python experiments/compression/compression.py --out results/compression_smoke --tag _smoke -- rounds=2
    python experiments/compression/compression.py --schemes topk sign --seeds 0 --out results/compression_sub --tag _sub

Writes ``results.csv`` (one row per run), ``table.md`` and ``acc_vs_uplink.png`` next to this
file (``--tag`` inserts a suffix, for smoke tests); the runs go to ``results/compression/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# every lossy codec with an ``uplink.error_feedback`` key, at its conf/uplink/*.yaml defaults
# (topk, randk, stc: fraction 0.01; threshold 0.001; qsgd 16 levels, Elias; uniform 8 bits;
# powersgd rank 1)
LOSSY = ("fp16", "bf16", "topk", "randk", "threshold", "qsgd", "uniform", "terngrad", "sign", "powersgd", "stc")
SCHEMES = ("none", *LOSSY, "sign_majority")
EF = ("none", "ef")
ALPHAS = ("0.1", "1", "iid")
COMMON = ["client_metrics=false", "checkpoint_every=0", "progress=false", "threads=1"]


def invocations(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(sweep folder name, the overrides of one multirun) for each multirun of the sweep."""
    parts = []
    dir_alphas = [a for a in args.alphas if a != "iid"]
    if dir_alphas:
        parts.append(("dir", ["partition=dirichlet_class", f"partition.alpha={','.join(dir_alphas)}"]))
    if "iid" in args.alphas:
        parts.append(("iid", ["partition=iid"]))
    lossy = [s for s in args.schemes if s in LOSSY]
    groups = []
    if "none" in args.schemes:
        groups.append(("fp32", ["uplink=none"]))
    if "sign_majority" in args.schemes:
        groups.append(("majority", ["uplink=sign_majority"]))
    if lossy:
        groups.append(("lossy", [f"uplink={','.join(lossy)}", f"uplink.error_feedback={','.join(args.ef)}"]))
    return [(f"{p}_{g}", po + go) for p, po in parts for g, go in groups]


def command(args: argparse.Namespace, sweep_dir: Path, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fedbench",
        "-m",
        *overrides,
        f"seed={','.join(str(s) for s in args.seeds)}",
        f"rounds={args.rounds}",
        f"eval_every={args.eval_every}",
        *COMMON,
        f"hydra.sweep.dir={sweep_dir}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.jobs}",
        *args.overrides,
    ]


def load(out: Path):
    """Every run's metric rows (evaluated rounds and not), with ``scheme``, ``ef`` and ``alpha``."""
    from fedbench.analysis import load_runs

    # the sweep's own multiruns only: other sweeps may share ``out`` (the README's downlink runs)
    ours = {f"{p}_{g}" for p in ("dir", "iid") for g in ("fp32", "majority", "lossy")}
    dirs = [d for d in sorted(out.iterdir()) if d.is_dir() and d.name in ours]
    df = load_runs(*dirs)
    df["scheme"] = df["uplink.name"]
    ef = df["uplink.error_feedback"] if "uplink.error_feedback" in df.columns else None
    df["ef"] = "-" if ef is None else ef.fillna("-").astype(str)  # none / sign_majority: no such key
    if "partition.alpha" in df.columns:
        alpha = df["partition.alpha"].map(lambda a: f"{float(a):g}" if a == a and a is not None else None)
    else:
        alpha = None
    df["alpha"] = alpha.where(df["partition.name"] != "iid", "iid") if alpha is not None else "iid"
    return df


def per_run(df, target: float):
    """One row per run: final accuracy, total uplink bytes, bytes and round when test_acc first
    reached ``target`` (NaN if never), compression against fp32 per round."""
    import numpy as np
    import pandas as pd

    rows = []
    for run_dir, r in df.sort_values(["run_dir", "round"]).groupby("run_dir", sort=False):
        first = r.iloc[0]
        ev = r[r.test_acc.notna()]
        hit = ev[ev.test_acc.astype(float) >= target]
        up = r.uplink_bytes.dropna().astype(float)
        # fp32 bytes of a round: sent bytes times the round's measured uplink_compression (fp32 over
        # sent); the uncompressed runs report no ratio and send fp32
        comp = r["uplink_compression"] if "uplink_compression" in r.columns else pd.Series(dtype=float)
        fp32 = (comp.astype(float) * r.uplink_bytes.astype(float)).dropna()
        rows.append(
            {
                "scheme": first.scheme,
                "error_feedback": first.ef,
                "alpha": first.alpha,
                "seed": int(first.seed),
                "status": first.status,
                "rounds_completed": int(r["round"].max()) if r["round"].notna().any() else 0,
                # a run that did not complete (diverged: NaN/Inf) has no final accuracy
                "final_test_acc": float(ev.test_acc.iloc[-1]) if len(ev) and first.status == "completed" else np.nan,
                "last_eval_round": int(ev["round"].iloc[-1]) if len(ev) else np.nan,
                "best_test_acc": float(ev.test_acc.max()) if len(ev) else np.nan,
                "uplink_bytes_cum": int(r.uplink_bytes_cum.max()) if r.uplink_bytes_cum.notna().any() else 0,
                "uplink_bytes_per_round": float(up.mean()) if len(up) else np.nan,
                "fp32_bytes_per_round": float(fp32.mean()) if len(fp32) else float(up.mean()) if len(up) else np.nan,
                f"round_to_{target:g}": int(hit["round"].iloc[0]) if len(hit) else np.nan,
                f"uplink_bytes_to_{target:g}": int(hit.uplink_bytes_cum.iloc[0]) if len(hit) else np.nan,
                "error": first.error if isinstance(first.error, str) else "",
                "run_dir": run_dir,
            }
        )
    res = pd.DataFrame(rows)
    for c in (f"round_to_{target:g}", f"uplink_bytes_to_{target:g}", "last_eval_round"):
        res[c] = res[c].astype("Int64")  # exact byte counts in the csv, empty where never reached
    res["compression_vs_fp32"] = res.fp32_bytes_per_round / res.uplink_bytes_per_round
    order = {s: i for i, s in enumerate(SCHEMES)}
    res["_o"] = res.scheme.map(order).fillna(99)
    res["_a"] = res.alpha.map({a: i for i, a in enumerate(ALPHAS)}).fillna(99)
    res["_e"] = res.error_feedback.map({"-": 0, "none": 1, "ef": 2, "ef21": 3})
    res = res.sort_values(["_a", "_o", "_e", "seed"]).drop(columns=["_o", "_a", "_e"])
    return res.reset_index(drop=True)


COLORS = {
    "none": "black",
    "fp16": "#7f7f7f",
    "bf16": "#bcbd22",
    "topk": "#d62728",
    "randk": "#ff7f0e",
    "threshold": "#8c564b",
    "qsgd": "#1f77b4",
    "uniform": "#17becf",
    "terngrad": "#9467bd",
    "sign": "#2ca02c",
    "powersgd": "#e377c2",
    "stc": "#000080",
    "sign_majority": "#98df8a",
}


def label(scheme: str, ef: str) -> str:
    if scheme == "none":
        return "none (fp32 FedAvg)"
    return scheme if ef == "-" else f"{scheme}, EF={ef}"


def fmt_bytes(b: float) -> str:
    if b != b:
        return "-"
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= k:
            return f"{b / k:.3g} {unit}"
    return f"{b:.0f} B"


def table(res, target: float, title: str) -> str:
    tcol = f"uplink_bytes_to_{target:g}"
    lines = [f"# {title}\n"]
    lines.append(
        "Mean ± sample std over seeds. `ratio`: fp32 uplink bytes per round over the scheme's (from the "
        f"measured message lengths). `to {target:g}`: mean cumulative uplink bytes when test accuracy "
        f"first reached {target:g} (evaluated every few rounds), over the seeds that reached it (n/N). "
        "A run that diverged (NaN/Inf) has no final accuracy; its total uplink counts the rounds it ran.\n"
    )
    for alpha in [a for a in ALPHAS if a in set(res.alpha)]:
        sub = res[res.alpha == alpha]
        lines.append("\n## iid\n" if alpha == "iid" else f"\n## Dirichlet alpha = {alpha}\n")
        lines.append(f"| scheme | EF | final test acc | total uplink | ratio | to {target:g} | runs |")
        lines.append("|---|---|---:|---:|---:|---:|---|")
        for (scheme, ef), g in sub.groupby(["scheme", "error_feedback"], sort=False):
            ok = g.status == "completed"
            acc = g.final_test_acc[ok].astype(float)
            if len(acc) > 1:
                acc_s = f"{acc.mean():.3f} ± {acc.std(ddof=1):.3f}"
            elif len(acc) == 1:
                acc_s = f"{acc.mean():.3f}"
            else:
                acc_s = ""
            if not ok.all():
                r = g.rounds_completed[~ok]
                span = f"{r.min()}" if r.min() == r.max() else f"{r.min()}-{r.max()}"
                acc_s += (
                    " " if acc_s else ""
                ) + f"{'/'.join(sorted(set(g.status[~ok])))} {(~ok).sum()}/{len(g)} (after round {span})"
            hit = g[tcol].dropna()
            lines.append(
                f"| {scheme} | {ef} | {acc_s} | {fmt_bytes(g.uplink_bytes_cum.mean())} | "
                f"{g.compression_vs_fp32.mean():.1f}x | "
                f"{fmt_bytes(hit.mean()) if len(hit) else '-'} ({len(hit)}/{len(g)}) | "
                f"{len(g)} |"
            )
    return "\n".join(lines) + "\n"


def wide_table(res, target: float) -> str:
    """One row per scheme x EF: final accuracy per alpha (mean ± std), total uplink bytes and ratio
    (alpha 0.1's; the others differ by a few percent for the variable-length codecs), and the
    uplink bytes to reach ``target`` per alpha."""
    tcol = f"uplink_bytes_to_{target:g}"
    alphas = [a for a in ALPHAS if a in set(res.alpha)]
    name = {a: a if a == "iid" else f"α={a}" for a in alphas}
    head = ["scheme", "EF", *(f"acc {name[a]}" for a in alphas), "uplink (all rounds)", "ratio"]
    head += [f"to {target:g}, {name[a]}" for a in alphas]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for (scheme, ef), g in res.groupby(["scheme", "error_feedback"], sort=False):
        cells = [scheme, ef]
        for a in alphas:
            x = g[g.alpha == a]
            ok = x[x.status == "completed"].final_test_acc
            cells.append(
                f"{ok.mean():.3f} ± {ok.std(ddof=1):.3f}" if len(ok) == len(x) else f"{len(x) - len(ok)}/{len(x)} div."
            )
        first = g[g.alpha == alphas[0]]
        done = first[first.status == "completed"]
        cells.append(fmt_bytes(done.uplink_bytes_cum.mean()) if len(done) else "-")
        cells.append(f"{first.compression_vs_fp32.mean():.0f}x")
        for a in alphas:
            hit = g[g.alpha == a][tcol].dropna()
            n = (g.alpha == a).sum()
            cells.append(
                "-" if not len(hit) else fmt_bytes(hit.mean()) + ("" if len(hit) == n else f" ({len(hit)}/{n})")
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw(df, res, out_png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = df[df.test_acc.notna()].copy()
    ev["test_acc"] = ev.test_acc.astype(float)
    ev["uplink_bytes_cum"] = ev.uplink_bytes_cum.astype(float)
    schemes = [s for s in SCHEMES if s in set(ev.scheme)]
    colors = {s: COLORS.get(s, "gray") for s in schemes}
    alphas = [a for a in ALPHAS if a in set(ev.alpha)]
    fig, axes = plt.subplots(1, len(alphas), figsize=(5.2 * len(alphas), 5.4), sharey=True, squeeze=False)
    for ax, alpha in zip(axes[0], alphas):
        sub = ev[ev.alpha == alpha]
        for (scheme, ef), g in sub.groupby(["scheme", "ef"], sort=False):
            # mean over seeds per evaluated round (a diverged seed drops out from its round on)
            m = g.groupby("round")[["uplink_bytes_cum", "test_acc"]].mean()
            ls = "-" if ef in ("ef", "ef21") or scheme == "none" else "--"
            done = (g.groupby("run_dir").status.first() == "completed").all()
            ax.plot(
                m.uplink_bytes_cum,
                m.test_acc,
                ls=ls,
                color=colors[scheme],
                lw=2.4 if scheme in ("none", "topk") else 1.2,
                marker="o" if scheme == "none" else None,
                ms=2.5,
                label=label(scheme, ef),
            )
            if not done:  # a run that diverged: an x where its curve (the mean of what is left) ends
                ax.plot(m.uplink_bytes_cum.iloc[-1], m.test_acc.iloc[-1], "x", color=colors[scheme], ms=7, mew=2)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("cumulative uplink bytes (all clients)")
        ax.set_title("iid" if alpha == "iid" else f"Dirichlet alpha = {alpha}")
    axes[0][0].set_ylabel("test accuracy (mean over seeds)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    key = {
        label(s, e): (SCHEMES.index(s), ("-", "none", "ef", "ef21").index(e))
        for s in SCHEMES
        for e in ("-", *EF, "ef21")
    }
    order = sorted(range(len(labels)), key=lambda i: key.get(labels[i], (99, 0)))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=7.5,
        title="solid: with EF (and fp32)\ndashed: without EF\nx: runs diverged",
        title_fontsize=7.5,
    )
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    p.add_argument("--ef", nargs="+", default=list(EF), choices=("none", "ef", "ef21"))
    p.add_argument("--alphas", nargs="+", default=list(ALPHAS), help="Dirichlet alphas and/or iid")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--target", type=float, default=0.9, help="accuracy for the bytes-to-target column")
    p.add_argument("--jobs", type=int, default=1, help="joblib parallel runs")
    p.add_argument("--out", type=Path, default=Path("results/compression"))
    p.add_argument("--tag", default="", help="suffix of the output files (results<tag>.csv, ...)")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("overrides", nargs="*", help="extra fedbench overrides for every run (after --)")
    args = p.parse_args()
    if not args.plot_only:
        t0 = time.time()
        for name, overrides in invocations(args):
            cmd = command(args, args.out / name, overrides)
            print("fedbench " + " ".join(cmd[3:]), flush=True)
            t1 = time.time()
            rc = subprocess.run(cmd, check=False).returncode
            print(f"{name}: exit status {rc}, {time.time() - t1:.0f} s", flush=True)
        print(f"sweep took {time.time() - t0:.0f} s", flush=True)
    df = load(args.out)
    res = per_run(df, args.target)
    res.drop(columns=["run_dir"]).to_csv(HERE / f"results{args.tag}.csv", index=False, float_format="%.6g")
    seeds = sorted(int(x) for x in res.seed.unique())
    title = (
        f"FedAvg, digits, cnn_small, 20 clients (10 per round), {int(res.rounds_completed.max())} rounds, "
        f"uplink codec x error feedback, mean over seeds {seeds}"
    )
    headline = (
        f"\n## All alphas\n\nFinal test accuracy (mean ± std over seeds), total uplink bytes and compression "
        f"against fp32 (alpha {ALPHAS[0]}), and mean uplink bytes to first reach test accuracy "
        f"{args.target:g} (over the seeds that reached it, when not all).\n\n"
    )
    (HERE / f"table{args.tag}.md").write_text(table(res, args.target, title) + headline + wide_table(res, args.target))
    draw(df, res, HERE / f"acc_vs_uplink{args.tag}.png", title)
    bad = res[res.status != "completed"]
    for _, r in bad.iterrows():
        print(f"not completed: {r.scheme} ef={r.error_feedback} alpha={r.alpha} seed={r.seed}: {r.status}: {r.error}")
    summary = res.groupby(["alpha", "scheme", "error_feedback"], sort=False).agg(
        acc=("final_test_acc", "mean"), acc_std=("final_test_acc", "std"), mb=("uplink_bytes_cum", "mean")
    )
    summary["mb"] /= 1e6
    print(summary.round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
