"""Final test accuracy against label skew for six federated methods (one command).

Sweeps ``partition.alpha`` in {0.05, 0.1, 0.5, 1, 10} (Dirichlet per-class convention, the
default partition) x {fedavg, fedprox, scaffold, feddyn, fednova, fedavg + server Adam} x seeds
{0, 1, 2} on the default experiment (scikit-learn digits, 20 clients, 10 per round, 100 rounds,
the small CNN), then writes ``results.csv``, ``table.md`` and ``accuracy_vs_alpha.png`` (mean
and 95% t-interval over seeds; final and best accuracy) next to this file.

    python experiments/heterogeneity/sweep.py                 # 90 runs, resumable
    python experiments/heterogeneity/sweep.py --plot-only     # redraw from finished runs

Runs go to ``results/heterogeneity/<method>/alpha=<a>/seed=<s>/`` (``--out``); a run whose
``summary.json`` says ``completed`` for the same resolved config is not run again, so an
interrupted sweep picks up where it stopped. ``--jobs`` runs that many in parallel processes,
each with ``threads = cores // jobs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALPHAS = (0.05, 0.1, 0.5, 1.0, 10.0)
SEEDS = (0, 1, 2)
METHODS: dict[str, list[str]] = {
    "fedavg": ["algorithm=fedavg"],
    "fedprox": ["algorithm=fedprox"],
    "scaffold": ["algorithm=scaffold"],
    "feddyn": ["algorithm=feddyn"],
    "fednova": ["algorithm=fednova"],
    "fedavg+adam": ["algorithm=fedavg", "server_opt=adam"],
}


def overrides(method: str, alpha: float, seed: int, extra: list[str]) -> list[str]:
    return [*METHODS[method], f"partition.alpha={alpha}", f"seed={seed}", "progress=false", *extra]


def run_one(job: tuple[str, float, int, list[str], str]) -> tuple[str, float, int, str, float | None]:
    method, alpha, seed, extra, run_dir = job
    from omegaconf import OmegaConf

    from fedbench.config import compose
    from fedbench.outputs import config_hash
    from fedbench.runner import run_experiment

    cfg = compose(*overrides(method, alpha, seed, extra))
    summary_path = Path(run_dir) / "summary.json"
    if summary_path.exists():
        old = json.loads(summary_path.read_text())
        if old.get("status") == "completed" and old.get("config_hash") == config_hash(
            OmegaConf.to_container(cfg, resolve=True)
        ):
            return method, alpha, seed, "skipped (completed)", old["final"].get("test_acc")
    summary = run_experiment(cfg, run_dir, callbacks=[])
    return method, alpha, seed, summary["status"], summary.get("final", {}).get("test_acc")


def collect(out: Path):
    import pandas as pd

    rows = []
    for method in METHODS:
        for alpha in ALPHAS:
            for seed in SEEDS:
                path = out / method / f"alpha={alpha}" / f"seed={seed}" / "summary.json"
                if not path.exists():
                    continue
                s = json.loads(path.read_text())
                final = s.get("final", {})
                rows.append(
                    {
                        "method": method,
                        "alpha": alpha,
                        "seed": seed,
                        "status": s["status"],
                        "test_acc": final.get("test_acc"),
                        "best_test_acc": s.get("best", {}).get("test_acc"),
                        "rounds": s.get("rounds_completed"),
                        "wall_time_s": s.get("wall_time_s"),
                    }
                )
    return pd.DataFrame(rows)


def summarize(df, metric: str = "test_acc"):
    """Mean, std, count and 95% t-interval of ``metric`` over the completed seeds of each
    (method, alpha), and how many runs did not complete (diverged or failed)."""
    import numpy as np
    from scipy import stats

    done = df[df["status"] == "completed"]
    table = done.groupby(["method", "alpha"])[metric].agg(["mean", "std", "count"]).reset_index()
    t = stats.t.ppf(0.975, (table["count"] - 1).clip(lower=1))
    table["ci95"] = np.where(table["count"] > 1, t * table["std"] / np.sqrt(table["count"]), np.nan)
    failed = df[df["status"] != "completed"].groupby(["method", "alpha"]).size().rename("not_completed")
    return table.merge(failed.reset_index(), how="left", on=["method", "alpha"]).fillna({"not_completed": 0})


def plot(df, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]  # Okabe-Ito
    markers = "osD^vP"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric, title in (
        (axes[0], "test_acc", "final test accuracy (round 100)"),
        (axes[1], "best_test_acc", "best test accuracy over the 100 rounds"),
    ):
        table = summarize(df, metric)
        for i, method in enumerate(METHODS):
            t = table[table["method"] == method].sort_values("alpha")
            if t.empty:
                continue
            lost = int(t["not_completed"].sum())
            label = method + (f" ({lost} of {len(SEEDS) * len(t)} runs diverged, left out)" if lost else "")
            dodge = 1.07 ** (i - (len(METHODS) - 1) / 2)  # side by side, so the bars stay readable
            ax.errorbar(
                t["alpha"] * dodge,
                t["mean"],
                yerr=t["ci95"].fillna(0),
                label=label,
                color=palette[i],
                marker=markers[i],
                capsize=2.5,
                linewidth=1.4,
                markersize=4.5,
            )
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("test accuracy (mean, 95% t-interval over 3 seeds)")
    axes[0].set_ylim(0.8, 1.0)
    fig.supxlabel("Dirichlet alpha (per-class convention, log scale; smaller = more skewed)", fontsize=10)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    fig.suptitle("scikit-learn digits, 20 clients, 10 per round, 100 rounds, small CNN, lr 0.05, batch 10", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def markdown(table) -> str:
    alphas = sorted(table["alpha"].unique())
    lines = ["| method | " + " | ".join(f"alpha={a:g}" for a in alphas) + " |", "|---|" + "---:|" * len(alphas)]
    for method in METHODS:
        cells = []
        for a in alphas:
            row = table[(table["method"] == method) & (table["alpha"] == a)]
            if row.empty:
                cells.append("")
                continue
            r = row.iloc[0]
            cell = f"{r['mean']:.3f} ± {r['ci95']:.3f}" if r["count"] > 1 else f"{r['mean']:.3f}"
            if r["not_completed"]:
                cell += f" ({int(r['not_completed'])} not completed)"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/heterogeneity", help="folder for the runs")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel runs (default: cores)")
    p.add_argument("--plot-only", action="store_true", help="only collect finished runs and draw")
    p.add_argument("extra", nargs="*", help="further config overrides for every run (e.g. rounds=20)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.plot_only:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        extra = [*args.extra, f"threads={threads}"]
        jobs = [
            (m, a, s, extra, str(out / m / f"alpha={a}" / f"seed={s}")) for a in ALPHAS for m in METHODS for s in SEEDS
        ]
        with ProcessPoolExecutor(args.jobs) as pool:
            for i, (m, a, s, status, acc) in enumerate(pool.map(run_one, jobs), 1):
                acc_s = f"{acc:.4f}" if acc is not None else "-"
                print(f"[{i}/{len(jobs)}] {m:12s} alpha={a:<5g} seed={s} {status:22s} test_acc={acc_s}", flush=True)
    df = collect(out)
    if df.empty:
        sys.exit(f"no finished runs under {out}")
    df.to_csv(HERE / "results.csv", index=False)
    table = summarize(df)
    best = summarize(df, "best_test_acc")
    text = (
        "Final test accuracy (round 100):\n\n"
        + markdown(table)
        + "\nBest test accuracy over the run:\n\n"
        + markdown(best)
    )
    (HERE / "table.md").write_text(text)
    plot(df, HERE / "accuracy_vs_alpha.png")
    print(text)
    print(f"wrote {HERE / 'results.csv'}, {HERE / 'table.md'}, {HERE / 'accuracy_vs_alpha.png'}")


if __name__ == "__main__":
    main()
