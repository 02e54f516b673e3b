"""Time ``fedbench.analysis.load_runs`` (and ``summarize``) on synthetic runs.

Builds RUNS run directories of ROUNDS rounds each in a temporary folder (a sweep's layout:
``<num>_<overrides>/`` with config.yaml, summary.json and metrics.parquet; 1 in 50 runs failed
before its first round and has no metrics), then times load_runs over the whole folder.

    python experiments/perf/bench_load_runs.py                 # 1,000 runs x 100 rounds
    python experiments/perf/bench_load_runs.py --runs 200 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

from fedbench.analysis import load_runs, summarize, varying_keys
from fedbench.outputs import metrics_frame


def config(alpha: float, lr: float, seed: int, rounds: int) -> dict:
    """A resolved config shaped like fedbench's default one (about 40 keys)."""
    return {
        "dataset": {"name": "digits", "test_fraction": 0.2},
        "partition": {"name": "dirichlet_class", "alpha": alpha, "min_size": 0},
        "model": {"name": "cnn_small", "channels": [16, 32]},
        "algorithm": {
            "name": "fedavg",
            "local_epochs": 1,
            "local_steps": None,
            "batch_size": 10,
            "lr": lr,
            "momentum": 0.0,
            "weight_decay": 0.0,
        },
        "server_opt": {"name": "sgd", "lr": 1.0, "momentum": 0.0},
        "engine": {
            "name": "auto",
            "max_pad_fraction": 0.25,
            "max_group_size": None,
            "compile": False,
            "trace": True,
            "trace_after": 64,
        },
        "logger": {"name": "none"},
        "seed": seed,
        "rounds": rounds,
        "num_clients": 20,
        "clients_per_round": 10,
        "eval_every": 1,
        "eval_batch_size": 4096,
        "client_metrics": True,
        "device": "auto",
        "client_state_device": "cpu",
        "threads": 0,
        "progress": False,
    }


def metric_rows(rng: np.random.Generator, rounds: int) -> list[dict]:
    acc = np.clip(np.linspace(0.2, 0.9, rounds) + rng.normal(0, 0.02, rounds), 0, 1)
    return [
        {
            "round": r + 1,
            "num_selected": 10,
            "train_loss": float(1 / (r + 1)),
            "test_acc": float(acc[r]),
            "test_loss": float(1 - acc[r]),
            "client_acc_mean": float(acc[r]),
            "client_acc_std": 0.05,
            "client_acc_p10": float(acc[r] - 0.1),
            "client_acc_min": float(acc[r] - 0.2),
            "uplink_bytes": 10 * 4 * 50_000,
            "downlink_bytes": 10 * 4 * 50_000,
            "uplink_bytes_cum": (r + 1) * 10 * 4 * 50_000,
            "downlink_bytes_cum": (r + 1) * 10 * 4 * 50_000,
            "train_time_s": 0.5,
            "eval_time_s": 0.05,
            "wall_time_s": 0.55 * (r + 1),
        }
        for r in range(rounds)
    ]


def build(root: Path, runs: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    alphas, lrs = [0.05, 0.1, 0.5, 1.0, 10.0], [0.01, 0.03, 0.1, 0.3]
    for i in range(runs):
        alpha, lr, seed = alphas[i % 5], lrs[(i // 5) % 4], i // 20
        d = root / f"{i}_partition.alpha={alpha},algorithm.lr={lr},seed={seed}"
        (d / ".hydra").mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump(config(alpha, lr, seed, rounds), sort_keys=False))
        failed = i % 50 == 49
        summary = {
            "status": "failed" if failed else "completed",
            "error": "RuntimeError: synthetic" if failed else None,
            "seed": seed,
            "config_hash": f"{i:064x}",
            "rounds_completed": 0 if failed else rounds,
            "partition": {"num_clients": 20, "size_mean": 71.9, "size_std": 30.2, "mean_label_entropy": 1.7},
        }
        (d / "summary.json").write_text(json.dumps(summary))
        if not failed:
            # plain to_parquet: the benchmark times reading, not fedbench's fsync'd atomic writes
            metrics_frame(metric_rows(rng, rounds)).to_parquet(d / "metrics.parquet", index=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        build(root, args.runs, args.rounds)
        print(f"built {args.runs} runs x {args.rounds} rounds in {time.perf_counter() - t:.1f} s")
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the 1-in-50 failed runs warn every time
                df = load_runs(root)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = summarize(df, target=0.8)
        t_sum = time.perf_counter() - t
    print(f"load_runs: {len(df):,} rows x {df.shape[1]} columns, {df['run_dir'].nunique()} runs")
    print(f"load_runs seconds: median {statistics.median(times):.2f} (runs: {', '.join(f'{x:.2f}' for x in times)})")
    print(f"summarize (by {varying_keys(df)}, target 0.8): {len(s)} groups in {t_sum:.2f} s")


if __name__ == "__main__":
    main()
