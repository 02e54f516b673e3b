"""Final accuracy of attack x aggregator x {no pre-aggregation, bucketing}, as heatmaps (one command).

The sweep is one ``fedbench -m`` multirun (joblib launcher, resumable: a relaunch skips finished
runs by config hash) on the default dataset (scikit-learn's 8x8 digits) with every client taking
part in every round, as in Karimireddy et al. 2022's robustness experiments (n = 25, f = 5):

    python experiments/robustness/robustness.py                       # alpha 0.1, f = 5 of 25
    python experiments/robustness/robustness.py --alpha 1 --byzantine 3
    python experiments/robustness/robustness.py --plot-only           # redraw from finished runs
    python experiments/robustness/robustness.py -- rounds=10          # extra overrides for every run

Writes ``results.csv`` (one row per run), ``heatmap_<tag>.png`` and ``table_<tag>.md`` next to this
file; the runs go to ``results/robustness/<tag>/`` (``--out``), ``tag = alpha<a>_f<f>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ATTACKS = ("none", "sign_flip", "label_flip", "alie", "ipm", "minmax", "mimic")
AGGREGATORS = ("mean", "median", "trimmed_mean", "krum", "geomed", "cclip")
PRE = {"none": "[]", "bucketing": "[bucketing]"}
SHARED_KEYS = {"aggregator.name", "aggregator.pre", "aggregator.f", "aggregator.bucket_size", "aggregator.clip_tau"}


def command(args: argparse.Namespace, sweep_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fedbench",
        "-m",
        f"attack={','.join(args.attacks)}",
        f"aggregator={','.join(args.aggregators)}",
        f"aggregator.pre={','.join(PRE.values())}",
        f"seed={','.join(str(s) for s in args.seeds)}",
        f"attack.num_byzantine={args.byzantine}",
        f"aggregator.f={args.byzantine}",
        f"partition.alpha={args.alpha}",
        f"num_clients={args.clients}",
        f"clients_per_round={args.clients}",
        f"rounds={args.rounds}",
        f"eval_every={args.rounds}",
        "client_metrics=false",
        "checkpoint_every=0",
        "progress=false",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.jobs}",
        *args.overrides,
    ]


def collect(sweep_dir: Path):
    from fedbench.analysis import load_runs

    df = load_runs(sweep_dir)
    # one row per run: its last round (a diverged run's last round has no accuracy: NaN)
    df = df.sort_values(["run_dir", "round"]).groupby("run_dir", as_index=False).last()
    df["pre"] = df["aggregator.pre"].map(lambda p: "bucketing" if "bucketing" in str(p) else "none")
    # a rule swept over one of its own keys (cclip's tau...) gets one row per value: "cclip tau=0.1"
    own = [c for c in df.columns if c.startswith("aggregator.") and c not in SHARED_KEYS]
    varying = [c for c in own if df.groupby("aggregator.name")[c].nunique().max() > 1]
    df["aggregator.name"] = df.apply(
        lambda r: " ".join([r["aggregator.name"], *(f"{c.split('.', 1)[1]}={r[c]:g}" for c in varying)]), axis=1
    )
    keep = ["attack.name", "aggregator.name", "pre", "seed", "status", "round", "test_acc"]
    extra = [c for c in ("detect_precision", "detect_recall") if c in df.columns]
    names = {"attack.name": "attack", "aggregator.name": "aggregator", "test_acc": "acc"}
    return df[keep + extra].rename(columns=names)


def draw(df, tag: str, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    attacks = [a for a in args.attacks if a in set(df.attack)]
    aggs = sorted(set(df.aggregator), key=lambda g: (args.aggregators.index(g.split()[0]), g))
    fig, axes = plt.subplots(1, 2, figsize=(3.0 + 1.3 * len(attacks), 2.4 + 0.42 * len(aggs)), squeeze=False)
    lines = [f"# Final test accuracy under attack ({tag})\n"]
    for ax, pre in zip(axes[0], PRE):
        sub = df[df.pre == pre]
        grid = np.full((len(aggs), len(attacks)), np.nan)
        for i, g in enumerate(aggs):
            for j, a in enumerate(attacks):
                vals = sub[(sub.aggregator == g) & (sub.attack == a)].acc.astype(float)
                if len(vals):
                    grid[i, j] = vals.mean()  # a diverged run has no accuracy: NaN, drawn blank
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for i in range(len(aggs)):
            for j in range(len(attacks)):
                v = grid[i, j]
                ax.text(
                    j,
                    i,
                    "div" if np.isnan(v) else f"{v:.2f}",
                    ha="center",
                    va="center",
                    color="white" if np.isnan(v) or v < 0.6 else "black",
                    fontsize=8,
                )
        ax.set_xticks(range(len(attacks)), attacks, rotation=45, ha="right")
        ax.set_yticks(range(len(aggs)), aggs)
        ax.set_title(f"pre-aggregation: {pre}")
        lines.append(f"\n## pre-aggregation: {pre}\n\n| aggregator | " + " | ".join(attacks) + " |")
        lines.append("|---|" + "---:|" * len(attacks))
        for i, g in enumerate(aggs):
            cells = ["div" if np.isnan(v) else f"{v:.3f}" for v in grid[i]]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    fig.suptitle(
        f"digits, {args.clients} clients (all per round), {args.byzantine} Byzantine, alpha={args.alpha}, "
        f"{args.rounds} rounds, mean over seeds {list(args.seeds)}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(HERE / f"heatmap_{tag}.png", dpi=120)
    (HERE / f"table_{tag}.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--byzantine", type=int, default=5)
    p.add_argument("--clients", type=int, default=25)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    p.add_argument("--aggregators", nargs="+", default=list(AGGREGATORS))
    p.add_argument("--out", type=Path, default=Path("results/robustness"))
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--name", help="sweep folder and output tag (default: alpha<a>_f<f>)")
    p.add_argument("overrides", nargs="*", help="extra fedbench overrides (after --)")
    args = p.parse_args()
    tag = args.name or f"alpha{args.alpha:g}_f{args.byzantine}"
    sweep_dir = args.out / tag
    if not args.plot_only:
        cmd = command(args, sweep_dir)
        print(" ".join(cmd[2:]), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=False)
        print(f"sweep took {time.time() - t0:.0f} s", flush=True)
    df = collect(sweep_dir)
    df.insert(0, "tag", tag)
    df.to_csv(HERE / f"results_{tag}.csv", index=False)
    draw(df, tag, args)
    print(df.groupby(["pre", "aggregator", "attack"]).acc.mean().unstack().round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
