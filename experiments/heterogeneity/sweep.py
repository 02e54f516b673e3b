"""Final test accuracy against label skew for six federated methods (one command).

Sweeps ``partition.alpha`` in {0.05, 0.1, 0.5, 1, 10} (Dirichlet per-class convention, the
default partition) x {fedavg, fedprox, scaffold, feddyn, fednova, fedavg + server Adam} x seeds
{0, 1, 2} on the default experiment (scikit-learn digits, 20 clients, 10 per round, 100 rounds,
the small CNN), then writes ``results.csv``, ``table.md`` and ``accuracy_vs_alpha.png`` (mean
and 95% t-interval over seeds) next to this file.

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


def summarize(df):
    import numpy as np
    from scipy import stats

    done = df[df["status"] == "completed"]
    g = done.groupby(["method", "alpha"])["test_acc"]
    table = g.agg(["mean", "std", "count"]).reset_index()
    t = stats.t.ppf(0.975, (table["count"] - 1).clip(lower=1))
    table["ci95"] = np.where(table["count"] > 1, t * table["std"] / np.sqrt(table["count"]), np.nan)
    failed = df[df["status"] != "completed"].groupby(["method", "alpha"]).size().rename("not_completed")
    return table.merge(failed.reset_index(), how="left", on=["method", "alpha"]).fillna({"not_completed": 0})


def plot(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]  # Okabe-Ito
    markers = "osD^vP"
    for i, method in enumerate(METHODS):
        t = table[table["method"] == method].sort_values("alpha")
        if t.empty:
            continue
        ax.errorbar(
            t["alpha"],
            t["mean"],
            yerr=t["ci95"].fillna(0),
            label=method,
            color=palette[i],
            marker=markers[i],
            capsize=3,
            linewidth=1.5,
            markersize=5,
        )
    ax.set_xscale("log")
    ax.set_xlabel("Dirichlet concentration alpha (per-class convention; smaller = more skewed)")
    ax.set_ylabel("final test accuracy (round 100)")
    ax.set_title("digits, 20 clients, 10 per round, small CNN: mean and 95% CI over 3 seeds", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
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
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) // 1))
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
    (HERE / "table.md").write_text(markdown(table))
    plot(table, HERE / "accuracy_vs_alpha.png")
    print(markdown(table))
    print(f"wrote {HERE / 'results.csv'}, {HERE / 'table.md'}, {HERE / 'accuracy_vs_alpha.png'}")


if __name__ == "__main__":
    main()
